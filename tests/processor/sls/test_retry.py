"""The SLS retry policy's parts: the deadline-bound stop, the backoff and what is retried (pure logic, a fake clock)."""

from __future__ import annotations

import threading

import pytest
from aliyun.log import LogException
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from common import deadline as deadline_module
from common.deadline import Deadline
from common.errors import BudgetExceededError, CursorExpiredError
from processor.invocation_retry import invocation_retrying
from processor.sls.retry import SLS_BACKOFF, RetryStats, backoff, sls_retrying, stop_before_deadline


class Clock:
    """Monotonic time that moves only when the policy sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(deadline_module.time, "monotonic", fake.monotonic)
    return fake


def failing(exc: BaseException):
    calls: list[float] = []

    def call() -> None:
        calls.append(0)
        raise exc

    return call, calls


def test_the_stop_gives_up_before_a_sleep_that_would_end_past_the_deadline(clock):
    call, calls = failing(OSError("down"))
    retrying = Retrying(retry=retry_if_exception_type(OSError), wait=wait_fixed(0.3), sleep=clock.sleep,
                        stop=stop_before_deadline(Deadline.after(1.0)), reraise=True)

    with pytest.raises(OSError, match="down"):
        retrying(call)

    # Tries at 0, 0.3, 0.6 and 0.9 s; another 0.3 s sleep would end past 1.0 s.
    assert len(calls) == 4
    assert clock.sleeps == [0.3, 0.3, 0.3]


def test_the_stop_composes_with_tenacitys_stops(clock):
    call, calls = failing(OSError("down"))
    deadline = Deadline.after(60)
    either = Retrying(retry=retry_if_exception_type(OSError), wait=wait_fixed(1), sleep=clock.sleep, reraise=True,
                      stop=stop_before_deadline(deadline) | stop_after_attempt(3))
    with pytest.raises(OSError, match="down"):
        either(call)
    assert len(calls) == 3

    calls.clear()
    both = Retrying(retry=retry_if_exception_type(OSError), wait=wait_fixed(1), sleep=clock.sleep, reraise=True,
                    stop=stop_before_deadline(Deadline.after(2.5)) & stop_after_attempt(1))
    with pytest.raises(OSError, match="down"):
        both(call)
    assert len(calls) == 3  # the deadline, not the attempt count, ended it


def test_backoff_doubles_from_first_with_jitter_and_stays_under_its_cap():
    wait = backoff(first=0.2, cap=2.0, jitter=0.5)
    waits = [[wait(_State(n)) for n in range(1, 9)] for _ in range(200)]

    assert all(0.2 <= w[0] <= 0.7 and 0.8 <= w[2] <= 1.3 for w in waits)
    assert max(max(w) for w in waits) <= 2.0
    assert min(w[7] for w in waits) >= 1.5


class _State:
    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


def test_sls_retrying_retries_throttling_until_the_deadline_then_names_the_last_error(clock):
    call, calls = failing(LogException("ShardReadQuotaExceed", "shard read quota exceeded", "r", 403))
    stats = RetryStats()

    with pytest.raises(BudgetExceededError, match=r"until the time budget ran out; last error: ShardReadQuotaExceed "
                                                  r"\(HTTP 403\): shard read quota exceeded"):
        sls_retrying(Deadline.after(5.0), stats, sleep=clock.sleep)(call)

    assert clock.now - 1000.0 <= 5.0
    assert stats.sls_retries == len(clock.sleeps) == len(calls) - 1 >= 3
    assert max(clock.sleeps) <= 2.0


def test_sls_retrying_does_not_retry_a_refusal(clock):
    call, calls = failing(LogException("SignatureNotMatch", "no", "r", 401))

    with pytest.raises(LogException):
        sls_retrying(Deadline.after(30), RetryStats(), sleep=clock.sleep)(call)

    assert len(calls) == 1
    assert clock.sleeps == []


def test_sls_backoff_is_the_one_every_sls_call_uses():
    assert sls_retrying(Deadline.after(1)).wait is SLS_BACKOFF


def test_invocation_retrying_does_not_retry_what_the_same_event_reproduces_nor_an_interrupt():
    for exc in (CursorExpiredError("expired"), KeyboardInterrupt()):
        call, calls = failing(exc)
        sleeps: list[float] = []
        with pytest.raises(type(exc)):
            invocation_retrying(5, threading.Event(), sleeps.append, "shard 0")(call)
        assert (len(calls), sleeps) == (1, [])
