"""What `lag` rules measure: per shard, how many seconds of data the function's checkpoint is behind, the figure
`sls-kafka lag` prints. The evaluator asks SLS and reads the checkpoints the function writes, so it needs the
function's SLS and checkpoint settings (SLS_ENDPOINT, SLS_PROJECT, SLS_LOGSTORE, credentials, CHECKPOINT_STORE,
SLS_CONSUMER_GROUP or KAFKA_CHECKPOINT_TOPIC, as the function has them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from alerting.rules import RuleSet
from checkpoints.base import CheckpointKey
from common.errors import ConfigError
from processor.commands.common import settings_without_kafka
from processor.commands.lag import shard_lag
from processor.credentials import resolve_credentials
from processor.runtime import Runtime
from processor.sls.shards import Logstore


class SlsSource:
    """The evaluator's SLS access, with the function's settings (`needs`: the variables it cannot do without).

    `credentials` may be replaced per invocation (FC hands a role's fresh STS token in each context)."""

    def __init__(self, env: Mapping[str, str] | None, context: Any, needs: tuple[str, ...], why: str) -> None:
        env = os.environ if env is None else env
        missing = [n for n in needs if not env.get(n, "").strip()]
        if missing:
            msg = f"{why}: set {', '.join(missing)}"
            raise ConfigError(msg)
        self.env = env
        self.endpoint = env["SLS_ENDPOINT"].strip()
        self.project = env.get("SLS_PROJECT", "").strip()
        self.credentials = resolve_credentials(context, env)
        # Only the SLS client and the checkpoint reader are used: no alert observer for this runtime.
        self.runtime = Runtime(settings_without_kafka({k: v for k, v in env.items() if k != "ALERT_RULES"}))

    def close(self) -> None:
        self.runtime.close(0)


class LagSource(SlsSource):
    def __init__(self, env: Mapping[str, str] | None = None, context: Any = None) -> None:
        super().__init__(env, context, ("SLS_ENDPOINT", "SLS_PROJECT", "SLS_LOGSTORE"),
                         "a lag rule needs the logstore the function reads")
        self.logstore = self.env["SLS_LOGSTORE"].strip()

    def measure(self) -> dict[str, float]:
        """Lag in seconds per shard id; a shard without a checkpoint yet is left out."""
        client = self.runtime.sls_client(self.endpoint, self.credentials)
        logstore = Logstore(client, self.project, self.logstore)
        store = self.runtime.checkpoint_reader(client)
        lags = {}
        for shard in logstore.list_parts():
            if shard.status != "readwrite":
                continue
            saved = store.load(CheckpointKey(self.project, self.logstore, shard.shard, ""))
            row = shard_lag(logstore, shard, None if saved is None else saved.cursor)
            if row["lag_seconds"] is not None:
                lags[str(shard.shard)] = float(row["lag_seconds"])
        return lags


def lag_source(rules: RuleSet, env: Mapping[str, str] | None = None, context: Any = None) -> LagSource | None:
    """The lag measurement when a rule needs one."""
    return LagSource(env, context) if any(r.kind == "lag" for r in rules.rules) else None
