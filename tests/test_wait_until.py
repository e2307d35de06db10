"""``wait_until``, which every deployment test waits with: asks again while what it reads is not
there yet, fails at once when the check itself fails."""

from __future__ import annotations

import time

import pytest

from devtools.airflow_deployment import AirflowApiError, wait_until


def test_a_failed_check_fails_at_once_not_at_the_timeout() -> None:
    def check() -> bool:
        raise AssertionError("the sensor ended before the numbers connected")

    started = time.monotonic()
    with pytest.raises(AssertionError, match="ended before"):
        wait_until(check, 600, "never")
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "not_yet",
    [ConnectionRefusedError("the API server is starting"), AirflowApiError("GET /dags/x/dagRuns/y: HTTP 404", 404)],
    ids=["connection-refused", "http-404"],
)
def test_what_is_not_there_yet_is_asked_again(not_yet: Exception) -> None:
    answers: list[Exception | str] = [not_yet, not_yet, "there"]

    def check() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until(check, 60, "the answer", interval=0.01) == "there"


def test_an_error_answer_that_waiting_cannot_change_fails_at_once() -> None:
    def check() -> bool:
        raise AirflowApiError("POST /dags/x/dagRuns: HTTP 422 bad conf", 422)

    with pytest.raises(AirflowApiError, match="422"):
        wait_until(check, 600, "never")


def test_a_check_that_stays_false_times_out_saying_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match="waiting for the numbers to connect"):
        wait_until(lambda: False, 0.05, "the numbers to connect", interval=0.01)
