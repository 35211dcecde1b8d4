"""One translation of SLS failures: the call, what SLS said and what to check; an authentication failure's text,
which may echo the signed request and its STS token, never (pure logic over fakes of the SDK client)."""

from __future__ import annotations

import pytest
from aliyun.log import LogException

from checkpoints.base import CheckpointKey
from checkpoints.sls_consumer_group import SlsConsumerGroupStore
from common.cursors import cursor_from_position
from common.deadline import Deadline
from common.errors import CheckpointError, SourceError
from common.sls_errors import describe, sls_error
from processor.config import SourceConfig
from processor.sls.retry import RetryStats, sls_retrying
from processor.sls.source import ShardRangeSource

TOKEN = "CAIS-sts-token-0123456789"
# What SLS answers a request signed with the wrong secret: the string it signed, headers included.
ECHOED = (f"signature abc not match, string to sign: 'GET\\n\\napplication/json\\nx-acs-security-token:{TOKEN}\\n"
          "x-log-apiversion:0.6.0\\n/logstores/driving/shards/0'")


def signature_mismatch() -> LogException:
    return LogException("SignatureNotMatch", ECHOED, "req-1", 401)


def test_an_auth_error_names_the_call_code_status_and_hint_but_not_the_echoed_request():
    error = sls_error("reading p/driving shard 0", signature_mismatch(), SourceError)

    assert isinstance(error, SourceError)
    assert str(error).startswith("SLS SignatureNotMatch (HTTP 401) reading p/driving shard 0 - the access key "
                                 "secret is wrong")
    assert TOKEN not in str(error)
    assert "string to sign" not in str(error)


@pytest.mark.parametrize("exc", [
    LogException("Unauthorized", f"token {TOKEN} has expired", "r", 401),
    LogException("SomethingNew", f"echo {TOKEN}", "r", 401),  # any 401, whatever its code
    LogException("SecurityTokenExpired", f"echo {TOKEN}", "r", 403),
])
def test_every_auth_failure_drops_sls_text(exc):
    assert TOKEN not in str(sls_error("on ListShards for p/l", exc, SourceError))
    assert TOKEN not in describe(exc)


def test_other_errors_keep_what_sls_said_and_a_hint_by_code_or_the_callers():
    missing = LogException("ProjectNotExist", "Project p does not exist", "r", 404)

    assert str(sls_error("on ListShards for p/l", missing, SourceError)) == (
        "SLS ProjectNotExist (HTTP 404) on ListShards for p/l: Project p does not exist - check the project name and "
        "the endpoint (region)")
    assert str(sls_error("writing checkpoint k", missing, CheckpointError, "check SLS_ENDPOINT")).endswith(
        "does not exist - check SLS_ENDPOINT")


def test_a_host_that_does_not_resolve_is_named_with_the_setting_to_check():
    exc = LogException("LogRequestError", "HTTPConnectionPool(host='p.cn-hangzhou.log.emulator', port=80): "
                       "Failed to resolve 'p.cn-hangzhou.log.emulator' ([Errno -2] Name or service not known)")

    error = sls_error("reading checkpoint k", exc, CheckpointError)

    assert isinstance(error, CheckpointError)
    assert "cannot resolve SLS host 'p.cn-hangzhou.log.emulator'" in str(error)
    assert "HTTP_PROXY" in str(error)
    assert str(error).endswith("(reading checkpoint k)")


class _RefusingSls:
    """An SDK client whose every call fails as SLS does for a wrong secret."""

    def pull_logs(self, *_args, **_kwargs):
        raise signature_mismatch()

    def get_check_point(self, *_args, **_kwargs):
        raise signature_mismatch()

    def get_begin_cursor(self, *_args, **_kwargs):
        raise signature_mismatch()


def test_the_source_translates_through_it():
    deadline = Deadline.after(5)
    source = ShardRangeSource(_RefusingSls(), "p", "driving", 0, cursor_from_position(0), cursor_from_position(5),
                              SourceConfig(), sls_retrying(deadline, RetryStats()), print, deadline)

    with pytest.raises(SourceError) as caught:
        list(source.pages())

    assert "SignatureNotMatch (HTTP 401) reading p/driving shard 0 - the access key secret is wrong" in str(
        caught.value)
    assert TOKEN not in str(caught.value)


def test_the_consumer_group_store_translates_through_it():
    store = SlsConsumerGroupStore(_RefusingSls(), "sls-kafka")

    with pytest.raises(CheckpointError) as caught:
        store.load(CheckpointKey("p", "driving", 0))

    assert str(caught.value).startswith("SLS SignatureNotMatch (HTTP 401) reading checkpoint p/driving/0 in consumer "
                                        "group 'sls-kafka' - the function's role needs log:GetCheckPoint")
    assert TOKEN not in str(caught.value)
