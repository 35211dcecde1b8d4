"""`channels_from_config`: a rules file's `channels:` section becomes working channels, or an error naming
the channel and the key (and, for a template, the file and its line)."""

from __future__ import annotations

import pytest

from alerting.channels import (
    ChannelConfigError,
    DingTalkChannel,
    EmailChannel,
    EmailConfig,
    WebhookChannel,
    channels_from_config,
)
from tests.alerting.channels.channel_support import FIRING, PASSWORD, RESOLVED, SENDER, TO, USERNAME

ENV = {"SMTP_PASSWORD": PASSWORD, "DINGTALK_SECRET": "SEC123", "HOOK_TOKEN": "t0ken"}


def email_section(server, **extra):
    return {"type": "email", "host": "127.0.0.1", "port": server.port, "security": "starttls",
            "username": USERNAME, "password": "${env:SMTP_PASSWORD}", "from": f"Fleet alerts <{SENDER}>",
            "to": list(TO), "ca_file": str(server.cert_path), **extra}


def test_a_section_with_every_kind_gives_channels_and_the_email_one_delivers(smtp_server):
    channels = channels_from_config({
        "ops-mail": email_section(smtp_server),
        "hook": {"type": "webhook", "url": "https://hooks.example.com/a",
                 "headers": {"Authorization": "Bearer ${env:HOOK_TOKEN}"}},
        "robot": {"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=x",
                  "secret": "${env:DINGTALK_SECRET}", "at_mobiles": "13800000000"},
    }, environ=ENV)

    assert [type(c) for c in channels.values()] == [EmailChannel, WebhookChannel, DingTalkChannel]
    assert [c.name for c in channels.values()] == ["ops-mail", "hook", "robot"]
    assert channels["hook"].config.headers == (("Authorization", "Bearer t0ken"),)
    assert channels["robot"].config.secret == "SEC123"
    assert channels["robot"].config.at_mobiles == ("13800000000",)
    assert channels["ops-mail"].send(FIRING).delivered  # the password came from the environment
    [mail] = smtp_server.mail()
    assert mail.mail_from == SENDER
    assert mail.message["From"] == f"Fleet alerts <{SENDER}>"
    assert mail.rcpt_tos == TO


def test_template_overrides_are_read_relative_to_the_rules_file(smtp_server, tmp_path):
    (tmp_path / "subject.j2").write_text("{{ rule }} is {{ transition }} at {{ value }}\n")
    (tmp_path / "body.txt.j2").write_text("{% for b in bars %}{{ b.value }};{% endfor %}\n")
    section = {"ops-mail": email_section(smtp_server, templates={"subject": "subject.j2", "text": "body.txt.j2"})}

    channel = channels_from_config(section, base_dir=tmp_path, environ=ENV)["ops-mail"]
    assert channel.send(RESOLVED).delivered

    [mail] = smtp_server.mail()
    assert mail.message["Subject"] == "speeding-count is resolved at 8"
    assert mail.text() == "12;20;44;73;\n"
    assert "<b>8</b>" in mail.html()  # the default HTML part is kept


@pytest.mark.parametrize(("change", "message"), [
    ({"password": "${env:NOT_SET}"},
     "channel 'ops-mail': password: environment variable NOT_SET (referenced as ${env:NOT_SET}) is not set"),
    ({"pasword": "x"}, "channel 'ops-mail': pasword: unknown key; expected one of ca_file, from, host,"),
    ({"host": None}, "channel 'ops-mail': host: is required"),
    ({"security": "ssl"}, "channel 'ops-mail': security: expected one of plain, starttls, tls, got 'ssl'"),
    ({"port": "twenty-five"}, "channel 'ops-mail': port: expected a number, got 'twenty-five'"),
    ({"port": -1}, "channel 'ops-mail': port: must be positive, got -1"),
    ({"to": ["ops@example.com", "not an address"]}, "channel 'ops-mail': to: 'not an address' is not an email"),
    ({"to": []}, "channel 'ops-mail': to: needs at least one entry"),
    ({"password": None}, "channel 'ops-mail': password: username and password go together"),
    ({"ca_file": "/nowhere/ca.pem"}, "channel 'ops-mail': ca_file: no such file: /nowhere/ca.pem"),
    ({"templates": {"body": "x.j2"}}, "channel 'ops-mail': templates.body: unknown template"),
    ({"type": "sms"}, "channel 'ops-mail': type: expected one of email, webhook, dingtalk, got 'sms'"),
])
def test_a_bad_email_setting_is_refused_naming_the_channel_and_the_key(smtp_server, change, message):
    with pytest.raises(ChannelConfigError) as refused:
        channels_from_config({"ops-mail": {**email_section(smtp_server), **change}}, environ=ENV)

    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(("section", "message"), [
    ({"type": "webhook", "url": "ftp://x/"}, "channel 'c': url: expected an http:// or https:// URL, got 'ftp://x/'"),
    ({"type": "webhook", "url": "https://x/", "headers": ["a"]}, "channel 'c': headers: expected a mapping"),
    ({"type": "dingtalk", "url": "https://x/", "at_all": "yes"}, "channel 'c': at_all: expected true or false"),
    ({"type": "dingtalk"}, "channel 'c': url: is required"),
    ("email", "channel 'c': expected a mapping of settings, got 'email'"),
])
def test_a_bad_http_setting_is_refused_naming_the_channel_and_the_key(section, message):
    with pytest.raises(ChannelConfigError) as refused:
        channels_from_config({"c": section}, environ=ENV)

    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(("template", "message"), [
    ("ok\n{% if value %}\nno end\n", "line 3: Unexpected end of template"),
    ("{{ rule }}\n{{ value | nosuchfilter }}\n", "line 2: No filter named 'nosuchfilter'"),
    ("{{ rule }}\n\n{{ vaule }}\n", "line 3: 'vaule' is undefined"),
    ("{{ n.__class__.__mro__ }}\n", "line 1: access to attribute '__class__' of 'Notification' object is unsafe"),
])
def test_a_template_error_names_the_channel_the_template_file_and_its_line(tmp_path, template, message):
    (tmp_path / "robot.md.j2").write_text(template)

    with pytest.raises(ChannelConfigError) as refused:
        channels_from_config({"robot": {"type": "dingtalk", "url": "https://x/", "template": "robot.md.j2"}},
                             base_dir=tmp_path, environ=ENV)

    assert str(refused.value).startswith(f"channel 'robot': template: template {tmp_path / 'robot.md.j2'} {message}")


def test_an_email_config_built_in_code_is_checked_too():
    with pytest.raises(ChannelConfigError, match="to: needs at least one recipient"):
        EmailConfig(host="h", sender=SENDER, to=())
    with pytest.raises(ChannelConfigError, match="security: expected one of plain, starttls, tls, got 'ssl'"):
        EmailConfig(host="h", sender=SENDER, to=TO, security="ssl")  # type: ignore[arg-type]
