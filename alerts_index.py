"""FC's handler setting is `<file>.<function>`: s.yaml's evaluator says `alerts_index.handler`."""

from alerting.function import handler, initialize

__all__ = ["handler", "initialize"]
