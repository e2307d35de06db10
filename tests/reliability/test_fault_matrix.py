"""The onboarding chain (create -> code -> verify -> register -> status) through the operators,
once per fault per step, against the sandbox.

For every run: exactly one number per input, registered once; the requests the step sent stay
within the configured attempts (one for permanent errors); throttles wait what Graph announced;
failures surface code, subcode, message and fbtrace_id (and, for 133016, when the block ends).
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_whatsapp.exceptions import GraphAPIError, GraphBlockedError, GraphConnectionError
from airflow_provider_whatsapp.sandbox import Fault
from tests.policies import FAST_POLICY

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

PIN = "274981"
TIMEOUT = 0.3
# Graph reports regain time in minutes; 0.01 min keeps each throttle wait real but short (0.6 s).
REGAIN_MINUTES = 0.01
BLOCK_ENDS = "2026-11-28T09:30:00+00:00"
# Unlike every wait the policy picks itself (test_announced_waits_are_not_the_policys_own).
RETRY_AFTER = 2


def usage_headers(waba_id: str, percent: int = 100) -> dict[str, str]:
    usage = {"call_count": percent, "total_cputime": 5, "total_time": 10}
    business = {
        waba_id: [{"type": "whatsapp_business_management", **usage, "estimated_time_to_regain_access": REGAIN_MINUTES}]
    }
    return {"X-Business-Use-Case-Usage": json.dumps(business), "X-App-Usage": json.dumps(usage)}


@dataclass(frozen=True)
class FaultCase:
    """One fault: how to build it, and what the step must do with it."""

    name: str
    outcome: str  # "recovers" (within the step's retries), "fails" (permanent), "unreachable"
    wait: float | None = None  # the throttle wait Graph announced, in seconds
    steps: tuple[str, ...] = ("create", "request_code", "verify", "register", "status")
    code: int | None = None
    subcode: int | None = None

    def build(self, waba_id: str) -> Fault | None:
        builders: dict[str, Any] = {
            "http_500": lambda: Fault.http(500, b"Internal Server Error"),
            "http_502_html": lambda: Fault.html(502),
            "http_503_retry_after": lambda: Fault.http(503, b"busy", headers={"Retry-After": str(RETRY_AFTER)}),
            "graph_code_1": lambda: Fault.graph_error(1, message="An unknown error occurred", http_status=500),
            "graph_code_2": lambda: Fault.graph_error(2, message="Service temporarily unavailable", http_status=503),
            "graph_is_transient": lambda: Fault.graph_error(131000, message="Something went wrong", is_transient=True),
            "throttle_4": lambda: Fault.graph_error(
                4, message="(#4) Application request limit reached", headers=usage_headers(waba_id)
            ),
            "throttle_80007": lambda: Fault.graph_error(
                80007, message="(#80007) Rate limit hit for WhatsApp Business Account", headers=usage_headers(waba_id)
            ),
            "throttle_613": lambda: Fault.graph_error(
                613, message="(#613) Calls to this api have exceeded the rate limit.", headers=usage_headers(waba_id)
            ),
            "connection_refused": lambda: None,
            "reset_before_applied": lambda: Fault.drop(after_apply=False, reset=True),
            "dropped_after_applied": lambda: Fault.drop(after_apply=True),
            "read_timeout_after_applied": lambda: Fault.delay(TIMEOUT * 3, after_apply=True),
            "malformed_json_200": lambda: Fault.malformed_json(200),
            "expired_token_190_463": lambda: Fault.graph_error(
                190, subcode=463, message="Error validating access token: Session has expired", http_status=401
            ),
            "register_block_133016": lambda: Fault.graph_error(
                133016,
                message="Account register deregister rate limit exceeded",
                error_user_msg=f"Too many register calls; try again after {BLOCK_ENDS}",
            ),
        }
        fault: Fault | None = builders[self.name]()
        return fault


FAULTS = [
    FaultCase("http_500", "recovers"),
    FaultCase("http_502_html", "recovers"),
    FaultCase("http_503_retry_after", "recovers", wait=float(RETRY_AFTER)),
    FaultCase("graph_code_1", "recovers"),
    FaultCase("graph_code_2", "recovers"),
    FaultCase("graph_is_transient", "recovers"),
    FaultCase("throttle_4", "recovers", wait=REGAIN_MINUTES * 60),
    FaultCase("throttle_80007", "recovers", wait=REGAIN_MINUTES * 60),
    FaultCase("throttle_613", "recovers", wait=REGAIN_MINUTES * 60),
    FaultCase("connection_refused", "unreachable"),
    FaultCase("reset_before_applied", "recovers"),
    FaultCase("dropped_after_applied", "recovers"),
    FaultCase("read_timeout_after_applied", "recovers"),
    FaultCase("malformed_json_200", "recovers"),
    FaultCase("expired_token_190_463", "fails", code=190, subcode=463),
    FaultCase("register_block_133016", "fails", steps=("register",), code=133016),
]
STEP_REQUESTS = {
    "create": ("POST", r"/phone_numbers$"),
    "request_code": ("POST", r"/request_code$"),
    "verify": ("POST", r"/verify_code$"),
    "register": ("POST", r"/register$"),
    "status": ("GET", r"^/\d+$"),
}
# The fault kinds the sandbox really served (or, for a refused connection, the hook really met).
SERVED_KINDS: set[str] = set()


def fault_fired(fault: FaultCase, sandbox: Any, step: str, before: int, error: BaseException | None) -> bool:
    """Whether the step met its fault: the sandbox served it to one of the step's requests since
    the ``before``-th, or (a refused connection) the step failed before sending one and none arrived."""
    method, path = STEP_REQUESTS[step]
    step_requests = sandbox.requests_to(method=method, path=path)[before:]
    if fault.outcome == "unreachable":
        refused = isinstance(error, GraphConnectionError) and error.request_sent is False
        return refused and not step_requests
    return any(request.fault is not None for request in step_requests)


MATRIX = [pytest.param(fault, step, id=f"{fault.name}@{step}") for fault in FAULTS for step in fault.steps]


class RecordingSleep:
    """Sleeps for real (the waits here are short) and records what the hook asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


class FakeTaskInstance:
    def __init__(self, try_number: int = 1) -> None:
        self.try_number = try_number
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@dataclass
class Chain:
    """The onboarding operators, run one step at a time the way a worker would run each task."""

    sandbox: Any
    phone_number: str
    sleep: RecordingSleep = field(default_factory=RecordingSleep)
    number_id: str | None = None

    def operator(self, step: str, conn_id: str) -> Any:
        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_whatsapp.hooks.whatsapp import WhatsAppBusinessHook
        from airflow_provider_whatsapp.operators import phone_numbers as ops
        from airflow_provider_whatsapp.sensors.phone_numbers import PhoneNumberStatusSensor

        common = {"task_id": step, "whatsapp_conn_id": conn_id}
        with DAG(f"fault_matrix_{step}", schedule=None, start_date=datetime(2026, 1, 1)):
            if step == "create":
                task: Any = ops.CreatePhoneNumberOperator(
                    cc="1", phone_number=self.phone_number, verified_name="Acme Faults", **common
                )
            elif step == "request_code":
                task = ops.RequestVerificationCodeOperator(phone_number_id=self.number_id, **common)
            elif step == "verify":
                code = self.sandbox.last_code(self.number_id)
                task = ops.VerifyCodeOperator(phone_number_id=self.number_id, code=code, **common)
            elif step == "register":
                task = ops.RegisterPhoneNumberOperator(phone_number_id=self.number_id, pin=PIN, **common)
            else:
                task = PhoneNumberStatusSensor(
                    phone_number_id=self.number_id, target={"status": "CONNECTED"}, poke_interval=0.01, **common
                )
        # The operator's own hook, with a policy whose waits are recorded.
        task.__dict__["hook"] = WhatsAppBusinessHook(
            whatsapp_conn_id=conn_id, retry_policy=FAST_POLICY, sleep=self.sleep
        )
        return task

    def run(self, step: str, conn_id: str = "whatsapp_default", try_number: int = 1) -> Any:
        task = self.operator(step, conn_id)
        context: dict[str, Any] = {"ti": FakeTaskInstance(try_number), "params": {}}
        try:
            if step == "status":
                result = task.poke(context)
                assert result.is_done, result.xcom_value
                return result.xcom_value
            result = task.execute(context)
            if step == "create":
                self.number_id = result
            return result
        finally:
            task.hook.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sandbox(whatsapp_sandbox_factory: Any, monkeypatch: Any) -> Any:
    sandbox = whatsapp_sandbox_factory(connect_delay=0.0, code_request_cooldown=0.0)
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_DEFAULT", sandbox.airflow_conn_json({"timeout": TIMEOUT}))
    refused = json.loads(sandbox.airflow_conn_json({"timeout": TIMEOUT}))
    refused["host"] = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_WHATSAPP_REFUSED", json.dumps(refused))
    return sandbox


@pytest.mark.parametrize(("fault", "step"), MATRIX)
def test_fault_at_step(sandbox: Any, tally: Counter[str], fault: FaultCase, step: str) -> None:
    chain = Chain(sandbox, phone_number=f"55502{abs(hash((fault.name, step))) % 100000:05d}")
    steps = list(STEP_REQUESTS)
    for earlier in steps[: steps.index(step)]:
        chain.run(earlier)

    method, path = STEP_REQUESTS[step]
    before = len(sandbox.requests_to(method=method, path=path))
    injected = fault.build(sandbox.default_waba_id)
    if injected is not None:
        sandbox.inject(injected, count=1, method=method, path=path)

    if fault.outcome == "recovers":
        chain.run(step)
        step_requests = sandbox.requests_to(method=method, path=path)[before:]
        served = sum(1 for request in step_requests if request.fault is not None)
        tally["faults served by the sandbox"] += served
        if served:
            SERVED_KINDS.add(fault.name)
        assert served == 1, "the fault was not served: the case proves nothing"
        sent = len(step_requests)
        assert 1 <= sent <= FAST_POLICY.max_attempts, f"{sent} requests for one step"
        if fault.wait is not None:
            # The wait Graph announced was honoured: not shortened, and not stretched past it.
            assert any(abs(wait - fault.wait) < 0.05 for wait in chain.sleep.waits), chain.sleep.waits
            assert max(chain.sleep.waits) <= fault.wait + 0.05, chain.sleep.waits
    elif fault.outcome == "unreachable":
        with pytest.raises(GraphConnectionError) as info:
            chain.run(step, conn_id="whatsapp_refused")
        refused = fault_fired(fault, sandbox, step, before, info.value)
        tally["connections refused before a request was sent"] += int(refused)
        if refused:
            SERVED_KINDS.add(fault.name)
        assert refused, "the connection was not refused before a request was sent, or a request arrived"
        assert len(chain.sleep.waits) == FAST_POLICY.max_attempts - 1
        # The task's next try (the connection is back) completes the step.
        chain.run(step, try_number=2)
    else:
        with pytest.raises(GraphAPIError) as failure:
            chain.run(step)
        error = failure.value
        step_requests = sandbox.requests_to(method=method, path=path)[before:]
        sent = len(step_requests)
        served = sum(1 for request in step_requests if request.fault is not None)
        text = str(error)
        shown = [f"code={fault.code}", f"fbtrace_id={error.fbtrace_id}", error.message]
        if fault.subcode is not None:
            shown.append(f"subcode={fault.subcode}")
        complete = bool(error.message and error.fbtrace_id) and all(part in text for part in shown)
        tally["faults served by the sandbox"] += served
        if served:
            SERVED_KINDS.add(fault.name)
        tally["errors shown with code, subcode, message, fbtrace_id"] += int(complete)
        assert sent == 1, "a permanent error was retried"
        assert complete, f"{text!r} lacks one of {shown}"
        if fault.code == 133016:
            assert isinstance(error, GraphBlockedError)
            assert error.blocked_until is not None
            assert error.blocked_until.isoformat() == BLOCK_ENDS
            assert f"blocked until {BLOCK_ENDS}" in text
        # The user renews the token / waits out the block; the task's next try carries on.
        chain.run(step, try_number=2)

    for later in steps[steps.index(step) + 1 :]:
        chain.run(later)

    numbers = sandbox.numbers()
    registered_once = [n for n in numbers if n["status"] == "CONNECTED" and sandbox.register_calls(n["id"]) == 1]
    tally["fault runs"] += 1
    tally["fault runs ending with one number registered once"] += int(len(numbers) == len(registered_once) == 1)
    tally["fault kinds met"] = len(SERVED_KINDS)
    assert len(numbers) == 1, "duplicate number created"
    [number] = numbers
    assert number["id"] == chain.number_id
    assert number["status"] == "CONNECTED"
    assert number["code_verification_status"] == "VERIFIED"
    assert sandbox.register_calls(number["id"]) == 1, "register applied more than once"


def test_matrix_covers_at_least_14_faults() -> None:
    assert len(FAULTS) >= 14
    assert len(MATRIX) >= 14 * 4


def test_announced_waits_are_not_the_policys_own() -> None:
    """A throttle wait asserted above can only be the one the answer announced: the policy would
    never pick it on its own (its backoff, its exhausted_wait)."""
    own = FAST_POLICY.exhausted_wait
    for fault in FAULTS:
        if fault.wait is not None:
            assert fault.wait > FAST_POLICY.backoff_max and abs(fault.wait - own) > 0.05, fault
