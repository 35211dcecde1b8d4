"""Channels that send an alert's notification: email over SMTP, a generic webhook, a DingTalk robot."""
