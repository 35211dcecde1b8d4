"""Reading one mapping of a rules file: typed keys whose errors say file, line, rule and key."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

from alerting.expressions import Condition, ExpressionError, compile_condition
from alerting.yaml_lines import Located
from common.errors import ConfigError

_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RulesError(ConfigError):
    """A rules file that cannot be used, with where and why."""


def unknown(m: Located, allowed: set[str], source: str, what: str) -> None:
    for key in m:
        if key not in allowed:
            msg = f"{source}:{m.lines[key]}: {what}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}"
            raise RulesError(msg)


class Where:
    """Reads keys of one mapping; every error says file, line, rule and key."""

    def __init__(self, source: str, rule: str, m: Located) -> None:
        self.source, self.rule, self.m = source, rule, m

    def fail(self, key: str, problem: str) -> RulesError:
        line = self.m.lines.get(key, self.m.line)
        return RulesError(f"{self.source}:{line}: {self.rule}: key {key!r}: {problem}")

    def text(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str | None:
        value = self.m.get(key, default)
        if value is None:
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
            raise self.fail(key, f"expected a non-empty text, got {value!r}")
        value = str(value).strip()
        if choices and value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self.m.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(key, f"expected a whole number >= {minimum}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.m.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def duration(self, key: str, default: int, minimum: int = 1) -> int:
        value = self.m.get(key, default)
        seconds = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and (m := _DURATION.match(value.strip())):
            seconds = int(m[1]) * _UNITS[m[2]]
        if seconds is None or seconds < minimum:
            raise self.fail(key, f"expected a duration like 30s, 5m, 1h or 1d (at least {minimum} s), got {value!r}")
        return seconds

    def condition(self, key: str) -> Condition | None:
        text = self.m.get(key)
        if text is None:
            return None
        if not isinstance(text, str):
            raise self.fail(key, f"expected a condition such as 'speed > 120', got {text!r}")
        try:
            return compile_condition(text)
        except ExpressionError as exc:
            raise self.fail(key, f"{exc} (at column {exc.column + 1})") from None

    def instant(self, key: str) -> int:
        value = self.m.get(key)
        if value is None:
            return 0
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise self.fail(key, f"expected an ISO time like 2026-12-31T08:00:00Z, got {value!r}") from None
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        if not isinstance(value, datetime):
            raise self.fail(key, f"expected an ISO time like 2026-12-31T08:00:00Z, got {value!r}")
        if value.tzinfo is None:
            raise self.fail(key, "give a time zone (e.g. Z or +08:00): a bare time is ambiguous")
        return int(value.timestamp())
