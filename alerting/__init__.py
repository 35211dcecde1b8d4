"""KPI alerting: rules over the projected driving logs, partial aggregates emitted by the function, an evaluator
that merges them across shards and decides, and channels that send each notification once."""
