"""The delivery core: one loop over a shard range (`loop`), the commit strategies that make it at-least-once or
exactly-once (`at_least_once`, `transactional`), where a run starts (`resume`), what it reports (`summary`) and
the per-batch hook for observers such as the KPI alerts (`observers`)."""
