"""Channels that send an alert's notification: email over SMTP, a generic webhook, a DingTalk robot."""

from alerting.channels.config import channels_from_config
from alerting.channels.email import EmailChannel, EmailConfig
from alerting.channels.settings import ChannelConfigError
from alerting.channels.webhook import DingTalkChannel, DingTalkConfig, WebhookChannel, WebhookConfig

__all__ = [
    "ChannelConfigError",
    "DingTalkChannel",
    "DingTalkConfig",
    "EmailChannel",
    "EmailConfig",
    "WebhookChannel",
    "WebhookConfig",
    "channels_from_config",
]
