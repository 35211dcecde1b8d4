"""`channels_from_config`: the rules file's `channels:` section, checked at start-up, as ready channels.

```yaml
channels:
  ops-mail:
    type: email
    host: smtp.example.com
    security: starttls          # plain | starttls | tls (implicit, port 465)
    username: alerts@example.com
    password: ${env:SMTP_PASSWORD}
    from: Fleet alerts <alerts@example.com>
    to: [ops@example.com, oncall@example.com]
  fleet-robot:
    type: dingtalk
    url: https://oapi.dingtalk.com/robot/send?access_token=${env:DINGTALK_TOKEN}
    secret: ${env:DINGTALK_SECRET}
```
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alerting.channels.email import EmailChannel, EmailConfig
from alerting.channels.settings import ChannelConfigError, Section
from alerting.channels.webhook import DingTalkChannel, DingTalkConfig, WebhookChannel, WebhookConfig
from alerting.notification import Channel

KINDS: dict[str, tuple[Any, Any]] = {
    "email": (EmailConfig, EmailChannel),
    "webhook": (WebhookConfig, WebhookChannel),
    "dingtalk": (DingTalkConfig, DingTalkChannel),
}


def channels_from_config(section: Any, *, base_dir: Path | None = None,
                         environ: Mapping[str, str] | None = None) -> dict[str, Channel]:
    """Each channel by name. `base_dir` anchors relative template and CA paths (the rules file's directory);
    `environ` resolves `${env:NAME}` (default: the process environment). Raises `ChannelConfigError`."""
    if not isinstance(section, Mapping):
        msg = f"channels: expected a mapping of channel names to their settings, got {section!r}"
        raise ChannelConfigError(msg)
    channels: dict[str, Channel] = {}
    for name, raw in section.items():
        if not isinstance(name, str) or not name.strip():
            msg = f"channels: a channel's name must be a non-empty string, got {name!r}"
            raise ChannelConfigError(msg)
        if not isinstance(raw, Mapping):
            msg = f"channel {name!r}: expected a mapping of settings, got {raw!r}"
            raise ChannelConfigError(msg)
        kind = raw.get("type")
        if kind not in KINDS:
            msg = f"channel {name!r}: type: expected one of {', '.join(KINDS)}, got {kind!r}"
            raise ChannelConfigError(msg)
        config_class, channel_class = KINDS[kind]
        config = config_class.from_section(Section(name, raw, config_class.KEYS, environ, base_dir))
        channels[name] = channel_class(name, config)
    return channels
