"""The speeding digest by e-mail: the function over four shards, the evaluator, the email channel and the dev
stack's real SMTP server, which is down at first."""

import pytest

from devstack.smtp import SmtpServer
from tests.alerting.support import alert_stack, make_logstore, window_start
from tests.alerting.test_alerts_e2e import SPEEDING


@pytest.fixture
def smtp(tmp_path):
    server = SmtpServer(tmp_path / "smtp").start()
    yield server
    server.stop()


def test_one_digest_mail_with_the_right_cars_even_when_the_server_was_down(kafka, topic_factory, tmp_path,
                                                                          function_env, sls_client, sls_proxy_env,
                                                                          sls_project, smtp):
    channels = f"""channels:
  ops-mail:
    type: email
    host: 127.0.0.1
    port: {smtp.port}
    security: starttls
    ca_file: {smtp.cert_path}
    from: alerts@fleet.example.com
    to: [ops@example.com]
    timeout: 5
"""
    stack = alert_stack(channels + SPEEDING, kafka, topic_factory, tmp_path, function_env)
    logstore = make_logstore(sls_client, sls_proxy_env, sls_project)
    t0 = window_start(60)
    for shard in range(4):
        logstore.put(shard, [({"speed": 100, "carID": 1, "zone": "z"}, t0),
                             ({"speed": 121 + shard, "carID": 10 + shard, "zone": "z"}, t0 + 5)])
    logstore.deliver()
    stack.clock.now = t0 - 1
    evaluator = stack.evaluator()
    evaluator.tick()
    smtp.stop()
    stack.clock.now = t0 + 120
    assert evaluator.tick().failed == 1
    smtp.start()
    stack.clock.now += 5
    assert evaluator.tick().sent == 1
    stack.clock.now += 600
    evaluator.tick()
    evaluator.close()

    [mail] = smtp.mail()
    text = mail.text()
    # Every speeding car of the four shards, with its speed, fastest first; car 1 kept to the limit.
    assert "4 in this alert:\n  13: 124\n  12: 123\n  11: 122\n  10: 121\n" in text
    assert mail.message["Subject"].startswith("[FIRING] speeding (critical): 4 ")
    [entry] = evaluator.outbox.values()
    assert entry["notification"]["id"] in mail.message["Message-ID"]
    assert (entry["status"], entry["attempts"]) == ("sent", 2)
