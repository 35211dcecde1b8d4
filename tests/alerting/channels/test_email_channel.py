"""EmailChannel against the dev stack's real SMTP server: what the server stored, and how failures are classed."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from alerting.channels.email import EmailChannel, EmailConfig, message_id
from devstack.kafka import free_port
from tests.alerting.channels.channel_support import (
    DEFERRED,
    FIRING,
    PASSWORD,
    REFUSED,
    RESOLVED,
    SENDER,
    TO,
    USERNAME,
)


def channel(server, security="starttls", **overrides) -> EmailChannel:
    port = server.tls_port if security == "tls" else server.port
    config = EmailConfig(host="127.0.0.1", port=port, security=security, sender=SENDER, to=TO, username=USERNAME,
                         password=PASSWORD, ca_file=server.cert_path, timeout=5.0)
    return EmailChannel("ops-mail", dataclasses.replace(config, **overrides))


@pytest.mark.parametrize("security", ["plain", "starttls", "tls"])
def test_each_security_mode_logs_in_and_delivers_text_and_html_to_both_recipients(smtp_server, security):
    result = channel(smtp_server, security).send(FIRING)

    assert result.delivered, result.reply
    assert result.reply.startswith("250 2.0.0 Ok: stored as")
    [mail] = smtp_server.mail()
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == TO
    msg = mail.message
    assert msg["To"] == ", ".join(TO)
    assert msg["Subject"] == "[FIRING] speeding-count (critical): 73 > 50"
    assert msg["Message-ID"] == "<speeding-count.zone=north.1764662400.firing@fleet.example.com>"
    assert msg["In-Reply-To"] is None
    assert msg["Auto-Submitted"] == "auto-generated"
    text, html = mail.text(), mail.html()
    assert "Window:    2025-12-02 08:00:00 UTC to 2025-12-02 08:05:00 UTC (5 min, event time)" in text
    assert "Value:     73 > 50 (the threshold)" in text
    assert "Recent windows ▂▃▅█" in text
    assert "  2025-12-02 08:00:00 UTC            73  #########################  <- crosses the threshold" in text
    assert "  1234: 131\n  3512: 127.5\n" in text
    assert ('{"speed":131,"carID":1234}\n    project fleet, logstore driving, shard 2, '
            "cursor MTcwMDAwMDAwMDAwMDAwMA==, 2025-12-02 08:00:31 UTC") in text
    assert "<b>73</b> &gt; 50" in html
    assert html.count("height: 12px") == len(FIRING.history)
    assert "background: #d9534f; height: 12px; width: 100%;" in html  # the window that crossed
    escaped_record = "<code>{&#34;speed&#34;:131,&#34;carID&#34;:1234}</code>"
    assert f"{escaped_record}</td><td>fleet</td><td>driving</td><td>2</td>" in html


@pytest.mark.parametrize("security", ["plain", "starttls", "tls"])
def test_each_security_mode_delivers_without_a_login_too(smtp_server, security):
    result = channel(smtp_server, security, username=None, password=None).send(FIRING)

    assert result.delivered, result.reply
    assert [m.rcpt_tos for m in smtp_server.mail()] == [TO]


def test_a_resolved_mail_threads_under_its_firing_and_a_repeat_send_keeps_its_message_id(smtp_server):
    mail_channel = channel(smtp_server)

    for notification in (FIRING, RESOLVED, RESOLVED):
        assert mail_channel.send(notification).delivered

    firing, resolved, again = (m.message for m in smtp_server.mail())
    assert resolved["Subject"] == "[RESOLVED] speeding-count (critical): 8 > 50"
    assert resolved["In-Reply-To"] == resolved["References"] == firing["Message-ID"]
    assert again["Message-ID"] == resolved["Message-ID"] != firing["Message-ID"]


def test_an_id_that_is_no_valid_local_part_is_hashed_into_the_message_id_the_same_way_each_time():
    assert message_id("rule a/zone=<north>", "Alerts <a@x.org>") == message_id("rule a/zone=<north>", "a@x.org")
    assert message_id("rule a/zone=<north>", "a@x.org").endswith("@x.org>")
    assert "<north>" not in message_id("rule a/zone=<north>", "a@x.org")


def test_a_server_that_is_down_is_retryable():
    port = free_port()  # nothing listens there

    result = EmailChannel("m", EmailConfig(host="127.0.0.1", port=port, security="plain", sender=SENDER,
                                           to=TO, timeout=2.0)).send(FIRING)

    assert (result.delivered, result.retryable) == (False, True)
    assert "ConnectionRefusedError" in result.reply


def test_a_server_that_stops_is_retryable_and_the_retry_delivers_once_it_is_back(smtp_server):
    mail_channel = channel(smtp_server)
    assert mail_channel.send(FIRING).delivered
    smtp_server.stop()

    down = mail_channel.send(RESOLVED)
    smtp_server.start()
    retried = mail_channel.send(RESOLVED)

    assert (down.delivered, down.retryable) == (False, True)
    assert retried.delivered, retried.reply
    assert [m.message["Message-ID"] for m in smtp_server.mail()] == [
        message_id(FIRING.id, SENDER), message_id(RESOLVED.id, SENDER)]


def test_a_server_that_never_greets_times_out_and_is_retryable():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the connection; nobody ever answers on it
        config = EmailConfig(host="127.0.0.1", port=silent.getsockname()[1], security="plain", sender=SENDER,
                             to=TO, timeout=0.5)

        result = EmailChannel("m", config).send(FIRING)

    assert (result.delivered, result.retryable) == (False, True)
    assert "timed out" in result.reply


def test_a_recipient_refused_with_550_is_not_retryable_and_keeps_the_reply(smtp_server):
    result = channel(smtp_server, to=(REFUSED,)).send(FIRING)

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reply == f"{REFUSED}: 550 5.1.1 <{REFUSED}>: Recipient address rejected: User unknown"
    assert smtp_server.mail() == []


def test_one_recipient_refused_for_good_does_not_keep_the_mail_from_the_other(smtp_server):
    result = channel(smtp_server, to=(TO[0], REFUSED)).send(FIRING)

    assert result.delivered
    assert f"refused for good: {REFUSED}: 550 5.1.1" in result.reply
    [mail] = smtp_server.mail()
    assert mail.rcpt_tos == (TO[0],)


def test_a_recipient_deferred_with_4xx_sends_to_nobody_so_the_retry_cannot_duplicate(smtp_server):
    result = channel(smtp_server, to=(TO[0], DEFERRED)).send(FIRING)

    assert (result.delivered, result.retryable) == (False, True)
    assert result.reply == f"{DEFERRED}: 451 4.3.0 <{DEFERRED}>: Temporary lookup failure, try again later"
    assert smtp_server.mail() == []


def test_a_wrong_password_is_535_and_not_retryable(smtp_server):
    result = channel(smtp_server, password="wrong").send(FIRING)

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reply == "535 5.7.8 Authentication credentials invalid"
    assert smtp_server.mail() == []


def test_an_untrusted_certificate_is_refused_before_anything_is_sent(smtp_server):
    result = channel(smtp_server, "tls", ca_file=None).send(FIRING)

    assert (result.delivered, result.retryable) == (False, False)
    assert "CERTIFICATE_VERIFY_FAILED" in result.reply
    assert smtp_server.mail() == []


def test_implicit_tls_against_the_starttls_port_is_a_configuration_error(smtp_server):
    result = channel(smtp_server, "tls", port=smtp_server.port).send(FIRING)

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reply.startswith("TLS failed")


def test_a_record_digest_without_a_threshold_says_how_many_matched_its_condition(smtp_server):
    digest = dataclasses.replace(FIRING, value=4.0, threshold=None, comparison="speed > 120")

    assert channel(smtp_server).send(digest).delivered

    [mail] = (m.message for m in smtp_server.mail())
    assert mail["Subject"] == "[FIRING] speeding-count (critical): 4 matching speed > 120"
