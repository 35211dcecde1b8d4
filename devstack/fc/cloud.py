"""The local cloud: `s.yaml` deployed onto the FC host, with its SLS triggers reading the emulator."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aliyun.log import LogClient

from devstack.fc.code import prepare
from devstack.fc.host import FcHost
from devstack.fc.instances import DEFAULT_MAX_INSTANCES, Deployment
from devstack.fc.spec import load
from devstack.fc.timer import TimerTrigger
from devstack.fc.trigger import Positions, SlsTrigger

log = logging.getLogger(__name__)
# What an instance needs of this machine's network: the SLS emulator is reached as an HTTP proxy.
NETWORK_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")
LOCAL_ACCOUNT_ID = "1234567890123456"


@dataclass(frozen=True)
class CloudConfig:
    state_dir: Path
    # The SLS endpoint the trigger reads and puts into its events (the emulator answers any name as a proxy).
    sls_endpoint: str
    access_key_id: str
    access_key_secret: str
    account_id: str = LOCAL_ACCOUNT_ID
    max_instances: int = DEFAULT_MAX_INSTANCES
    network_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, state_dir: Path, env: Mapping[str, str], **overrides: Any) -> CloudConfig:
        fields: dict[str, Any] = {
            "state_dir": state_dir, "sls_endpoint": env.get("SLS_ENDPOINT", "cn-hangzhou.log.emulator"),
            "access_key_id": env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "dev"),
            "access_key_secret": env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "dev"),
            "network_env": {k: env[k] for k in NETWORK_VARIABLES if k in env}}
        return cls(**{**fields, **overrides})

    @property
    def credentials(self) -> dict[str, str]:
        return {"access_key_id": self.access_key_id, "access_key_secret": self.access_key_secret,
                "security_token": ""}


class LocalCloud:
    def __init__(self, config: CloudConfig, async_backoff: float = 1.0) -> None:
        self.config = config
        self.host = FcHost(config.state_dir / "logs", config.max_instances, async_backoff)
        self.triggers: dict[str, list[SlsTrigger]] = {}
        self.timers: dict[str, list[TimerTrigger]] = {}
        self._sls = LogClient(config.sls_endpoint, config.access_key_id, config.access_key_secret)

    @property
    def secrets(self) -> dict[str, str]:
        return {self.config.access_key_id: self.config.access_key_secret}

    def deploy(self, s_yaml: Path, env: Mapping[str, str] | None = None) -> list[Deployment]:
        """Deploy every fc3 function of `s_yaml`: all are checked before any replaces what runs."""
        env = os.environ if env is None else env
        specs = load(s_yaml, env, self.config.account_id)
        deployments = [prepare(spec, self.config.state_dir / "functions" / spec.name, s_yaml.parent.resolve(),
                               self.config.credentials, self.config.network_env) for spec in specs]
        for deployment in deployments:
            spec = deployment.spec
            self._stop_triggers(spec.name)
            self.host.deploy(deployment)
            book = self.host.books[spec.name]
            invoke = lambda event, name=spec.name: self.host.invoke(name, event)  # noqa: E731
            self.timers[spec.name] = [TimerTrigger(t, invoke, book.write).start() for t in spec.timers if t.enabled]
            self.triggers[spec.name] = [
                # Positions per source: a redeploy onto another logstore must not resume at this one's cursors.
                SlsTrigger(t, spec, invoke, self._sls, self.config.sls_endpoint,
                           Positions(self.config.state_dir / "triggers"
                                     / f"{spec.name}.{t.name}.{t.project}.{t.logstore}.json"),
                           book.write).start()
                for t in spec.triggers if t.enabled]
            log.info("deployed %s (%s, %s) with %d enabled trigger(s)", spec.name, spec.runtime, spec.handler,
                     len(self.triggers[spec.name]) + len(self.timers[spec.name]))
        return deployments

    def _stop_triggers(self, name: str) -> None:
        for trigger in [*self.triggers.pop(name, []), *self.timers.pop(name, [])]:
            trigger.stop()

    def close(self) -> None:
        for name in [*self.triggers]:
            self._stop_triggers(name)
        self.host.close()
