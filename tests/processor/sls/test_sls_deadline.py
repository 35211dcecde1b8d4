"""Every SLS request ends by its deadline, the SDK's own retries included (real SDK against the emulator)."""

from __future__ import annotations

import time

import pytest

from common.deadline import Deadline
from common.errors import BudgetExceededError, SourceError
from processor.backfill.runs import plan
from processor.sls.retry import DeadlineLogClient, PullTooLargeError
from processor.sls.shards import BEGIN, END, Logstore, ShardInfo
from tests.pipeline_support import put_groups


@pytest.fixture
def logstore(sls_client, sls_project) -> str:
    sls_client.create_logstore(sls_project, "driving", ttl=1, shard_count=1)
    put_groups(sls_client, sls_project, "driving", [[{"content": '{"speed":1,"carID":2}'}]] * 3)
    return "driving"


def timed(expected: type[BaseException], fn, *args, **kwargs) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(expected) as info:
        fn(*args, **kwargs)
    return info.value, time.monotonic() - started


def test_a_hung_pull_ends_at_the_deadline_not_after_the_sdk_timeout_and_retries(sls_client, sls_project, logstore,
                                                                                 sls_faults):
    sls_client.timeout = 30
    begin = sls_client.get_begin_cursor(sls_project, logstore, 0).get_cursor()
    sls_faults.delay(op="pull_logs", seconds=20, times=20)
    client = DeadlineLogClient(sls_client, Deadline.after(2))

    error, elapsed = timed(BudgetExceededError, client.pull_logs, sls_project, logstore, 0, begin, count=10)

    assert "no answer within the time budget" in str(error)
    assert 1.9 <= elapsed < 2.6


def test_persistent_5xx_stops_at_the_deadline_instead_of_ten_sdk_retries(sls_client, sls_project, logstore,
                                                                          sls_faults):
    begin = sls_client.get_begin_cursor(sls_project, logstore, 0).get_cursor()
    sls_faults.error(op="pull_logs", code="InternalServerError", times=50)
    client = DeadlineLogClient(sls_client, Deadline.after(2.5))

    error, elapsed = timed(BudgetExceededError, client.pull_logs, sls_project, logstore, 0, begin, count=10)

    # The SDK's retries (1 s apart) run while they fit; the one that would start past the deadline does not.
    assert "HTTP 500" in str(error)
    assert elapsed < 2.6


def test_the_view_shares_the_client_and_serves_requests_normally(sls_client, sls_project, logstore):
    sls_client.timeout = 7
    client = DeadlineLogClient(sls_client, Deadline.after(60))

    resp = client.pull_logs(sls_project, logstore, 0, client.get_begin_cursor(sls_project, logstore, 0).get_cursor(),
                            count=10)

    assert resp.get_loggroup_count() == 3
    assert client._session is sls_client._session  # kept-alive connections, no new handshake per invocation
    assert client.timeout == pytest.approx(7)  # capped by the client's own timeout while time is left
    assert sls_client.timeout == 7


def test_a_request_is_not_sent_once_the_deadline_has_passed(sls_client, sls_project, logstore):
    client = DeadlineLogClient(sls_client, Deadline.after(0))

    with pytest.raises(BudgetExceededError, match="could be sent"):
        client.list_shards(sls_project, logstore)


def test_backfill_planning_with_a_hung_get_cursor_fails_within_its_budget(sls_client, sls_project, logstore,
                                                                         sls_faults):
    # A plain client, as the commands build one: the SDK's default timeout is 120 s per request.
    store = Logstore(sls_client, sls_project, logstore, budget_seconds=2)
    sls_faults.delay(op="get_cursor", seconds=30, times=20)

    error, elapsed = timed(SourceError, plan, store, [ShardInfo(0, "readwrite")], BEGIN, END)

    assert "GetCursor" in str(error)
    assert elapsed < 2.6


def test_a_pull_over_the_page_limit_is_refused_on_its_headers_and_a_single_group_is_not(sls_client, sls_project):
    sls_client.create_logstore(sls_project, "big", ttl=1, shard_count=1)
    put_groups(sls_client, sls_project, "big", [[{"content": "x" * (1 << 20)}]] * 3)
    begin = sls_client.get_begin_cursor(sls_project, "big", 0).get_cursor()
    client = DeadlineLogClient(sls_client, Deadline.after(30), max_pull_bytes=2 << 20)

    with pytest.raises(PullTooLargeError) as refused:
        client.pull_logs(sls_project, "big", 0, begin, count=3)
    one = client.pull_logs(sls_project, "big", 0, begin, count=1)

    assert refused.value.groups == 3
    assert refused.value.raw_size > 3 << 20
    assert one.get_loggroup_count() == 1
    assert one.get_raw_size() > 1 << 20
