"""Sandbox: control endpoints, lifecycle of the server, plugin fixtures and the CLI."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_whatsapp.sandbox import DEFAULT_WABA_ID, GraphSandbox
from airflow_provider_whatsapp.sandbox.client import read_verification_code

PLUGIN = "airflow_provider_whatsapp.sandbox.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]

REPO = Path(__file__).resolve().parents[2]


def control(sandbox: Any, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return requests.request(method, f"{sandbox.url}/_sandbox/{path}", json=body, timeout=10)


def test_codes_state_clock_and_requests(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    assert control(whatsapp_sandbox, "GET", f"codes/{number_id}").status_code == 404
    graph.post(f"{number_id}/request_code", {"code_method": "SMS", "language": "en_US"})
    code = control(whatsapp_sandbox, "GET", f"codes/{number_id}").json()["code"]
    assert code == whatsapp_sandbox.last_code(number_id)
    assert read_verification_code(whatsapp_sandbox.url, number_id) == code

    state = control(whatsapp_sandbox, "GET", "state").json()
    assert [w["id"] for w in state["wabas"]] == [DEFAULT_WABA_ID]
    assert [n["id"] for n in state["numbers"]] == [number_id]
    assert state["counts"]["numbers"] == 1
    assert state["rejected_calls"] == 0

    logged = control(whatsapp_sandbox, "GET", "requests").json()["requests"]
    assert [(r["method"], r["path"]) for r in logged] == [
        ("POST", f"/{DEFAULT_WABA_ID}/phone_numbers"),
        ("POST", f"/{number_id}/request_code"),
    ]
    # Control calls are neither logged nor counted.
    assert len(whatsapp_sandbox.requests) == 2

    assert control(whatsapp_sandbox, "POST", "clock/advance", {"seconds": 601}).ok
    expired = graph.post(f"{number_id}/verify_code", {"code": code})
    assert graph.error(expired)["message"] == "(#100) The verification code has expired"


def test_fault_approve_and_reset_endpoints(whatsapp_sandbox_factory: Any, graph_for: Any) -> None:
    sandbox = whatsapp_sandbox_factory(name_review_delay=3600.0)
    graph = graph_for(sandbox)
    number_id = graph.create()
    assert control(sandbox, "POST", f"numbers/{number_id}/approve_name").ok
    assert sandbox.number(number_id)["name_status"] == "APPROVED"
    assert control(sandbox, "POST", "numbers/404/approve_name").status_code == 404

    fault = {"kind": "graph_error", "count": 1, "method": "GET", "path": number_id, "code": 2, "message": "down"}
    assert control(sandbox, "POST", "faults", fault).ok
    assert graph.error(graph.get(number_id))["code"] == 2
    assert graph.get(number_id).ok
    assert control(sandbox, "POST", "faults", {"kind": "nope"}).status_code == 400

    assert control(sandbox, "POST", "reset").ok
    assert sandbox.numbers() == []
    assert sandbox.requests == []
    assert control(sandbox, "GET", "nothing").status_code == 404


def test_requests_filter_and_reset(graph: Any, whatsapp_sandbox: Any) -> None:
    number_id = graph.create()
    graph.get(number_id)
    assert len(whatsapp_sandbox.requests_to(method="POST")) == 1
    assert len(whatsapp_sandbox.requests_to(method="get", path=rf"^/{number_id}$")) == 1
    assert whatsapp_sandbox.requests_to(path="register") == []
    whatsapp_sandbox.reset_requests()
    assert whatsapp_sandbox.requests == []


def test_keep_alive_and_stop_are_bounded() -> None:
    sandbox = GraphSandbox(token="EAAfixed")
    with sandbox:
        session = requests.Session()
        for _ in range(20):
            assert session.get(
                f"{sandbox.url}/v26.0/{DEFAULT_WABA_ID}", headers={"Authorization": "Bearer EAAfixed"}, timeout=10
            ).ok
        # The session still holds an idle keep-alive connection; stop must not wait for it.
    sandbox.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{sandbox.url}/v26.0/{DEFAULT_WABA_ID}", timeout=2)
    session.close()


def test_airflow_conn_json(whatsapp_sandbox_factory: Any) -> None:
    sandbox = whatsapp_sandbox_factory(app_secret="s", token="EAAt")
    conn = json.loads(sandbox.airflow_conn_json({"timeout": 5}))
    assert conn == {
        "conn_type": "whatsapp_business",
        "host": sandbox.url,
        "password": "EAAt",
        "extra": {"api_version": "v26.0", "waba_id": DEFAULT_WABA_ID, "app_secret": "s", "timeout": 5},
    }
    assert sandbox.url == f"http://127.0.0.1:{sandbox.port}"


def test_whatsapp_connection_fixture(whatsapp_connection: Any) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_WHATSAPP_DEFAULT"])
    assert (conn["host"], conn["password"]) == (whatsapp_connection.url, whatsapp_connection.token)


# What the CLI prints after its exports, so that a script reading them knows it has them all.
END_OF_START_UP = "# Serving until Ctrl-C\n"


def read_cli_output(process: subprocess.Popen[str]) -> tuple[list[str], dict[str, str]]:
    """The comment lines the CLI printed before its exports, and the exports as the shell sees them."""
    assert process.stdout is not None
    comments: list[str] = []
    exports: dict[str, str] = {}
    for _ in range(20):  # bounded: the CLI prints three comments, the exports and its last line
        line = process.stdout.readline()
        if line.startswith("export "):
            [assignment] = shlex.split(line[len("export ") :])
            name, _, value = assignment.partition("=")
            exports[name] = value
        else:
            assert line.startswith("#"), line
            comments.append(line)
            if line == END_OF_START_UP:
                break
    assert comments[-1] == END_OF_START_UP, "the CLI's start-up output has no last line"
    return comments, exports


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_every_export_and_stops(stop_signal: int) -> None:
    second_waba = str(int(DEFAULT_WABA_ID) + 1)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_whatsapp.sandbox",
            *("--port", "0", "--token", "EAAcli", "--fixed-code", "123456", "--two-step-pin", "604718"),
            *("--wabas", "2", "--waba-rate-limit", f"{second_waba}=1", "--app-rate-limit", "100"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        comments, exports = read_cli_output(process)
        assert comments[0].startswith("# Graph API sandbox serving on http://127.0.0.1:")
        url = comments[0].split()[-1]
        assert f"WABA IDs: {DEFAULT_WABA_ID} (the connection's waba_id), {second_waba}" in comments[1]
        assert sorted(exports) == [
            "AIRFLOW_CONN_WHATSAPP_DEFAULT",
            "AIRFLOW_CONN_WHATSAPP_TWO_STEP_PIN",
            "AIRFLOW_VAR_WHATSAPP_ONBOARDING_CODE_SOURCE",
            "AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN",
        ]
        conn = json.loads(exports["AIRFLOW_CONN_WHATSAPP_DEFAULT"])
        assert (conn["host"], conn["password"], conn["extra"]["waba_id"]) == (url, "EAAcli", DEFAULT_WABA_ID)
        assert exports["AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN"] == "604718"
        assert json.loads(exports["AIRFLOW_CONN_WHATSAPP_TWO_STEP_PIN"])["password"] == "604718"
        headers = {"Authorization": "Bearer EAAcli"}
        statuses = [requests.get(f"{url}/v26.0/{waba}", headers=headers, timeout=10) for waba in [second_waba] * 2]
        assert [r.status_code for r in statuses] == [200, 400]
        assert statuses[1].json()["error"]["code"] == 80008
        assert json.loads(statuses[1].headers["X-App-Usage"])["call_count"] == 1
        assert requests.get(f"{url}/v26.0/{DEFAULT_WABA_ID}", headers=headers, timeout=10).status_code == 200
        process.send_signal(stop_signal)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--waba-rate-limit", "abc=1"], "WABA_ID=N"),
        (["--waba-rate-limit", "5=1"], "does not serve: 5"),
        (["--app-rate-limit", "0"], "app_rate_limit"),
        (["--wabas", "0"], "wabas"),
        (["--two-step-pin", "12345"], "6 digits"),
    ],
)
def test_cli_refuses_bad_options(arguments: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_whatsapp.sandbox", "--port", "0", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_cli_refuses_non_loopback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_whatsapp.sandbox", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "loopback" in result.stderr


def test_concurrent_creates_are_thread_safe(whatsapp_sandbox: Any) -> None:
    def create(i: int) -> int:
        with requests.Session() as session:
            response = session.post(
                f"{whatsapp_sandbox.url}/v26.0/{DEFAULT_WABA_ID}/phone_numbers",
                json={"cc": "1", "phone_number": f"55502{i % 40:05d}", "verified_name": "Acme"},
                headers={"Authorization": f"Bearer {whatsapp_sandbox.token}"},
                timeout=10,
            )
            return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(create, range(80)))
    assert statuses.count(200) == 40
    assert statuses.count(400) == 40
    ids = [n["id"] for n in whatsapp_sandbox.numbers()]
    assert len(set(ids)) == 40
    assert len(whatsapp_sandbox.requests) == 80


def cli_exports(*arguments: str) -> tuple[list[str], dict[str, str]]:
    """Start the CLI, read what it printed at start-up, stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_whatsapp.sandbox", *arguments],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        return read_cli_output(process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def test_cli_exports_are_stable_across_restarts_when_asked() -> None:
    comments, first = cli_exports("--port", "0")
    # Random port, token and PIN: the CLI says which flags give the same exports again.
    [hint] = [line for line in comments if line.startswith("# The same exports after a restart")]
    flags = shlex.split(hint.split("start it with ", 1)[1])
    assert flags[::2] == ["--port", "--token", "--two-step-pin"]
    conn = json.loads(first["AIRFLOW_CONN_WHATSAPP_DEFAULT"])
    assert flags[3] == conn["password"] and flags[5] == first["AIRFLOW_VAR_WHATSAPP_TWO_STEP_PIN"]
    # Asked for the same ones (the first port is free again once it stopped), the exports match.
    comments, again = cli_exports(*flags)
    assert again == first
    assert not any(line.startswith("# The same exports") for line in comments)
