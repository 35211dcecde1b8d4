"""Backfill: a range of some shards cut into trigger-shaped events and run per shard (`runs`), a job id bound to
its ranges so that a re-run resumes (`jobs`), and the shards spread over worker processes (`pool`)."""
