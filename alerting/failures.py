"""What `failed_invocations` rules count: the SLS trigger's own log (the `logConfig` logstore), one record per
invocation attempt with `function`, `taskId`, `shardId`, `attempt`, `status`, `requestId`, `errorType` and
`errorMessage` (as devstack/fc/trigger.py writes them). The attempts of one delivery share its `taskId`: it failed
after its retries when none of them succeeded. The evaluator reads it with the function's SLS settings
(SLS_ENDPOINT, credentials) in the rule's `project` and `logstore`, by default SLS_PROJECT and
SLS_TRIGGER_LOGSTORE, the variables s.yaml's trigger takes its `logConfig` from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from alerting.lag import SlsSource
from alerting.notification import Sample
from alerting.rules import TRIGGER_LOG_DEFAULTS, Rule, RuleSet
from processor.sls.shards import Logstore

PULL_COUNT = 1000


@dataclass(frozen=True)
class Failure:
    """A delivery that failed after its retries. `sample`: its last attempt's record (error, request id), with
    where it is in the trigger log."""

    function: str
    shard: str
    first_attempt: int  # unix seconds: the delivery belongs to the window holding it
    sample: Sample

    @property
    def group(self) -> str:
        # FC function names have no "/": the group splits back into function and shard.
        return f"{self.function}/{self.shard}"


class TriggerLog(SlsSource):
    def __init__(self, rules: RuleSet, env: Mapping[str, str] | None = None, context: Any = None) -> None:
        needs, why = ["SLS_ENDPOINT"], "a failed_invocations rule reads the trigger's log in SLS"
        for rule in (r for r in rules.rules if r.trigger_log is not None):
            keys = zip(("project", "logstore"), TRIGGER_LOG_DEFAULTS, rule.trigger_log, strict=True)
            for key, variable, given in keys:
                if not given and variable not in needs:
                    needs.append(variable)
                    why = f"rule {rule.name!r} gives no {key!r} of the trigger's log, so it reads {variable}"
        super().__init__(env, context, tuple(needs), why)
        self.logstore = self.env.get("SLS_TRIGGER_LOGSTORE", "").strip()

    def failures(self, rule: Rule, since: int, until: int) -> list[Failure]:
        """The failed deliveries among the attempts logged in [since, until) (by receive time)."""
        project, name = rule.trigger_log or ("", "")
        project, name = project or self.project, name or self.logstore
        client = self.runtime.sls_client(self.endpoint, self.credentials)
        logstore = Logstore(client, project, name)
        tasks: dict[str, list[tuple[dict[str, str], Sample]]] = {}
        for part in logstore.list_parts():
            cursor, stop = logstore.cursor(part.shard, since), logstore.cursor(part.shard, until)
            while cursor != stop:
                page = client.pull_logs(project, logstore.logstore, part.shard, cursor, count=PULL_COUNT,
                                        end_cursor=stop)
                for rec in page.get_flatten_logs_json():
                    fields = {k: str(v) for k, v in rec.items() if not k.startswith("__")}
                    sample = Sample(orjson.dumps(fields), project, logstore.logstore, part.shard, cursor,
                                    int(rec["__time__"]))
                    tasks.setdefault(fields.get("taskId", ""), []).append((fields, sample))
                if page.get_next_cursor() == cursor:
                    break
                cursor = page.get_next_cursor()
        return [_failure(attempts) for attempts in tasks.values()
                if all(fields.get("status") != "success" for fields, _ in attempts)]


def _failure(attempts: list[tuple[dict[str, str], Sample]]) -> Failure:
    last, sample = max(attempts, key=lambda a: int(a[0].get("attempt") or 0))
    return Failure(last.get("function", ""), last.get("shardId", ""), min(s.event_time for _, s in attempts), sample)


def trigger_log(rules: RuleSet, env: Mapping[str, str] | None = None, context: Any = None) -> TriggerLog | None:
    """The trigger-log reader when a rule needs one."""
    return TriggerLog(rules, env, context) if any(r.kind == "failed_invocations" for r in rules.rules) else None
