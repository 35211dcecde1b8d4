"""FC's handler setting is `<file>.<function>`: this file lets s.yaml say `index.handler` / `index.initialize`."""

from processor.handler import handler, initialize

__all__ = ["handler", "initialize"]
