"""Templates of the channels: the defaults in alerting/templates/, or a user's file, in jinja2's sandbox.

A template is compiled and rendered once against a sample notification when the configuration is loaded, so a
syntax error, an unknown variable (StrictUndefined) or an unsafe attribute is reported at start-up, naming the
template file and its line, and not when an alert has to go out.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from alerting.channels.settings import ChannelConfigError
from alerting.notification import GroupValue, Notification, Sample, Transition

DEFAULTS = Path(__file__).resolve().parents[1] / "templates"
SPARK = "▁▂▃▄▅▆▇█"
RECORD_CHARS = 500  # a sample record is for finding it in SLS, not for reading it all in the mail
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


@dataclass(frozen=True)
class Template:
    path: Path
    compiled: jinja2.Template

    def render(self, notification: Notification, max_samples: int) -> str:
        return self.compiled.render(context(notification, max_samples))


@cache
def _environment(directory: Path, html: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined,
                                autoescape=html, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def load(channel: str, key: str, override: Path | None, default_name: str, *, html: bool = False) -> Template:
    """The user's template at `override`, else the default; checked by rendering a sample notification."""
    path = (override or DEFAULTS / default_name).resolve()
    where = f"channel {channel!r}: {key}: template {path}"
    try:
        template = Template(path, _environment(path.parent, html).get_template(path.name))
    except jinja2.TemplateSyntaxError as exc:
        msg = f"{where} line {exc.lineno}: {exc.message}"
        raise ChannelConfigError(msg) from exc
    except (OSError, UnicodeDecodeError, jinja2.TemplateNotFound) as exc:
        msg = f"{where}: cannot be read ({exc})"
        raise ChannelConfigError(msg) from exc
    try:
        template.render(SAMPLE, max_samples=3)
    except Exception as exc:  # anything a template can raise: undefined names, unsafe calls, filters' errors
        msg = f"{where} line {error_line(exc, path)}: {exc}"
        raise ChannelConfigError(msg) from exc
    return template


def error_line(exc: BaseException, path: Path) -> int | str:
    """The template line an error was raised at: jinja2 rewrites the traceback to show template lines."""
    line: int | str = "?"
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0").rstrip(".")


def iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def breaches(n: Notification, value: float) -> bool:
    compare = COMPARE.get(n.comparison)
    return bool(compare and n.threshold is not None and compare(value, n.threshold))


def _shortened(text: str) -> str:
    return text if len(text) <= RECORD_CHARS else text[:RECORD_CHARS] + f"… ({len(text)} characters)"


def context(n: Notification, max_samples: int) -> dict[str, Any]:
    """What a template sees: the notification `n` itself plus formatted values, bars and samples."""
    values = [v for _, v in n.history]
    top = max([*values, n.threshold or 0.0, 0.0])
    low = min([*values, 0.0])
    span = (top - low) or 1.0
    bars = [{"start": iso(start), "value": number(v), "percent": round(100 * (v - low) / span),
             "breach": breaches(n, v)} for start, v in n.history]
    spark = "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * len(SPARK)))] for v in values)
    samples = [{"record": _shortened(s.record.decode("utf-8", errors="replace")), "project": s.project,
                "logstore": s.logstore, "shard": s.shard, "cursor": s.cursor, "time": iso(s.event_time)}
               for s in n.samples[:max_samples]]
    return {
        "n": n, "rule": n.rule, "severity": n.severity, "transition": n.transition.value,
        "description": n.description, "comparison": n.comparison,
        "value": number(n.value), "threshold": number(n.threshold),
        # A record rule's digest has a condition, not a threshold: its value is how many matched.
        "verdict": (f"{number(n.value)} matching {n.comparison}" if n.threshold is None
                    else f"{number(n.value)} {n.comparison} {number(n.threshold)}"),
        "window_start": iso(n.window_start), "window_end": iso(n.window_end),
        "window_minutes": number((n.window_end - n.window_start) / 60),
        "groups": [{"group": g.group, "value": number(g.value)} for g in n.groups],
        "bars": bars, "sparkline": spark, "samples": samples, "more_samples": max(0, len(n.samples) - max_samples),
        "labels": dict(n.labels),
    }


SAMPLE = Notification(
    id="sample", rule="speeding", severity="warning", transition=Transition.FIRING,
    description="cars over 120 km/h", value=3.0, threshold=0.0, comparison=">",
    window_start=1_700_000_000, window_end=1_700_000_300,
    groups=(GroupValue("1234", 131.0), GroupValue("3512", 125.5)),
    history=((1_699_999_700, 0.0), (1_700_000_000, 3.0)),
    samples=(Sample(b'{"speed":131,"carID":1234}', "demo", "driving", 1, "MTY5OTk5OTcwMA==", 1_700_000_042),),
    labels={"team": "fleet"},
)
