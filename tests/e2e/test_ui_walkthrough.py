"""A person onboarding numbers by hand, in a real browser, against the shared deployment.

Headless Chromium (Debian's package) through Playwright clicks through Airflow's UI: trigger the
onboarding DAG with ``unattended`` off, type the code the sandbox sent into the required-action
form, recover from a wrong code, fill in and test the connection form, follow the WhatsApp
Manager link. Every step is asserted on the page and kept as a screenshot (the run ends by
printing their folder); ``docs/walkthrough.rst`` shows them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from airflow_provider_whatsapp.get_provider_info import CONNECTION_FIELDS, CONNECTION_UI_FIELD_BEHAVIOUR
from devtools.airflow_deployment import AirflowDeployment, wait_until
from tests.e2e.browser import CHROMIUM, PHASE_REPORTS, SCREENSHOTS, Screenshots, launch_chromium, new_page
from tests.e2e.shared_deployment import Deployment
from tests.secret_search import Haystack, leaked, search_each

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(900)]

ONBOARDING = "example_whatsapp_onboarding"
TASKS = ("create_phone_number", "request_code", "enter_code", "verify_code", "register", "wait_connected", "summary")
CODE_FORM = "Enter the 6-digit code that was sent to the new number."
WRONG_CODE_TEXT = "The verification code was not accepted for phone number"
BAD_TOKEN = "EAAexpired-ui-token-0"
# Not the sandbox's code, and unlikely to turn up anywhere by chance (see tests/secret_search.py).
WRONG_CODE = "739164"


# Module, not session: while Playwright's sync API is open, an asyncio loop runs on this thread
# and the asynchronous tests that follow could not start their own.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install Debian's chromium package (.ci/run does, as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright.chromium)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Screenshots:
    shots = Screenshots()
    pytestconfig.stash[SCREENSHOTS] = shots
    return shots


@pytest.fixture
def page(
    request: pytest.FixtureRequest, chromium: Browser, deployment: Deployment, screenshots: Screenshots
) -> Iterator[Page]:
    page = new_page(chromium, deployment.airflow.api_url)
    yield page
    call = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    if call is not None and call.failed:
        screenshots.take(page, f"FAILED-{request.node.name}")
    page.context.close()


# ----------------------------------------------------------------------------- steps a person takes


def trigger_by_hand(page: Page, screenshots: Screenshots | None, run_id: str, phone_number: str) -> None:
    """Trigger the onboarding DAG from its page, with ``unattended`` off and a run ID of our own."""
    page.goto(f"/dags/{ONBOARDING}")
    page.get_by_test_id("trigger-dag-button").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("#element_phone_number").fill(phone_number)
    dialog.locator("#element_verified_name").fill("Acme Support")
    unattended = dialog.locator("input[name=element_unattended]")
    expect(unattended).to_be_checked()
    dialog.locator("label:has(input[name=element_unattended])").click()
    expect(unattended).not_to_be_checked()
    if screenshots is not None:
        dialog.locator("label:has(input[name=element_unattended])").scroll_into_view_if_needed()
        screenshots.take(page, "01-trigger-with-unattended-off")
    # Opening the advanced options folds the parameters away; what was typed stays.
    dialog.get_by_role("button", name="Advanced Options").click()
    dialog.locator("input[name=dagRunId]").fill(run_id)
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    expect(page).to_have_url(re.compile(f"/runs/{run_id}"))


def wait_for_task(airflow: AirflowDeployment, run_id: str, task_id: str, state: str, timeout: float = 300) -> None:
    path = f"/dags/{ONBOARDING}/dagRuns/{run_id}/taskInstances/{task_id}"
    wait_until(lambda: airflow.api("GET", path)["state"] == state, timeout, f"{task_id} of {run_id} to be {state}")


def wait_until_parked(airflow: AirflowDeployment, run_id: str, task_id: str, state: str, try_number: int = 1) -> None:
    """Wait until ``task_id`` waits in ``state`` and the scheduler has seen its worker exit.

    Resumed sooner (a response typed, the number connected), the task races that exit: Airflow
    3.3.2 can take it for the end of the resumed try and fail the task (apache/airflow#72716).
    People and Meta are slower than a busy scheduler; a test is not.
    """
    wait_for_task(airflow, run_id, task_id, state)
    finished = (
        rf"TaskInstance Finished: dag_id={ONBOARDING}, task_id={task_id}, run_id={run_id}, "
        rf"[^\n]*state={state}, [^\n]*try_number={try_number},"
    )
    airflow.wait_for_log("scheduler", finished, timeout=120)


def connect_when_waited_for(deployment: Deployment, run_id: str, number_id: str) -> None:
    """Meta's part: the number turns CONNECTED once ``wait_connected`` waits for it (deferred)."""
    wait_until_parked(deployment.airflow, run_id, "wait_connected", "deferred")
    deployment.sandbox.set_fields(number_id, status="CONNECTED")


def enter_code(page: Page, screenshots: Screenshots | None, run_id: str, code: str, shot: str = "") -> None:
    """Type ``code`` into the required-action form of ``enter_code`` and press OK."""
    page.goto(f"/dags/{ONBOARDING}/runs/{run_id}/tasks/enter_code/required_actions")
    expect(page.get_by_text(CODE_FORM)).to_be_visible()
    expect(page.get_by_text("Verification code", exact=True)).to_be_visible()
    page.locator("#element_code").fill(code)
    if screenshots is not None and shot:
        screenshots.take(page, shot)
    page.get_by_test_id("hitl-option-OK").click()
    expect(page.get_by_text("Response received at")).to_be_visible()


def the_number(deployment: Deployment, phone_number: str) -> dict[str, Any]:
    [number] = [n for n in deployment.sandbox.numbers() if n["phone_number"] == phone_number]
    return number


def expect_task_states(page: Page, run_id: str, states: dict[str, str]) -> None:
    page.goto(f"/dags/{ONBOARDING}/runs/{run_id}")
    for task_id, state in states.items():
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=task_id, exact=True))
        expect(row).to_contain_text(state)


# ----------------------------------------------------------------------------- the code, typed by hand


@dataclass
class TypedCodeRun:
    run_id: str
    number: dict[str, Any]
    code: str


@pytest.fixture(scope="module")
def typed_code_run(chromium: Browser, deployment: Deployment, screenshots: Screenshots) -> Iterator[TypedCodeRun]:
    """One onboarding run where a person typed the code the sandbox sent, until the run finished."""
    airflow, run_id, phone_number = deployment.airflow, "onboarding_by_hand", "5550190101"
    page = new_page(chromium, airflow.api_url)
    try:
        trigger_by_hand(page, screenshots, run_id, phone_number)
        wait_until_parked(airflow, run_id, "enter_code", "awaiting_input")
        # Where a person finds what waits for them: Browse > Required Actions.
        page.goto("/required_actions?response_received=false")
        row = page.get_by_role("row").filter(has_text=run_id)
        expect(row).to_contain_text("WhatsApp verification code")
        expect(row).to_contain_text("Response Required")
        screenshots.take(page, "02-required-actions")
        number = the_number(deployment, phone_number)
        code = deployment.sandbox.last_code(number["id"])
        assert code is not None, number
        enter_code(page, screenshots, run_id, code, shot="03-enter-the-code")
        connect_when_waited_for(deployment, run_id, number["id"])
        state = airflow.wait_for_run(ONBOARDING, run_id, timeout=300)
        assert state == "success", f"{run_id} ended {state}; {airflow.where_to_look()}"
        yield TypedCodeRun(run_id, the_number(deployment, phone_number), code)
    except BaseException:
        screenshots.take(page, "FAILED-typed_code_run")
        raise
    finally:
        page.context.close()


def test_typed_code_onboards_the_number(
    page: Page, deployment: Deployment, typed_code_run: TypedCodeRun, screenshots: Screenshots
) -> None:
    run_id, number = typed_code_run.run_id, typed_code_run.number
    expect_task_states(page, run_id, {task_id: "Success" for task_id in TASKS})
    screenshots.take(page, "04-run-succeeded")

    page.goto(f"/dags/{ONBOARDING}/runs/{run_id}/tasks/summary")
    # The summary task's return value, as Airflow logs it (what it prints may fold into a group).
    report = page.get_by_text("Done. Returned value was:")
    expect(report).to_contain_text(f"'id': '{number['id']}'")
    expect(report).to_contain_text("'status': 'CONNECTED'")
    page.keyboard.press("w")  # wrap long lines
    screenshots.take(page, "05-number-connected")
    assert number["status"] == "CONNECTED" and number["code_verification_status"] == "VERIFIED", number

    # The typed code is a secret too: masked where verify_code rendered it, in no log of the run.
    airflow, haystack = deployment.airflow, Haystack(known_ids=(number["id"],))
    verify = airflow.api("GET", f"/dags/{ONBOARDING}/dagRuns/{run_id}/taskInstances/verify_code")
    assert verify["rendered_fields"]["code"] == "***", verify["rendered_fields"]
    logs: list[str] = []
    for ti in airflow.task_instances(ONBOARDING, run_id):
        task_path = f"/dags/{ONBOARDING}/dagRuns/{run_id}/taskInstances/{ti['task_id']}"
        haystack.add(f"{ti['task_id']} rendered fields", airflow.api("GET", task_path)["rendered_fields"])
        for try_number in range(1, (ti.get("try_number") or 0) + 1):
            logs.append(json.dumps(airflow.api("GET", f"{task_path}/logs/{try_number}")))
    haystack.add_output("task logs", "\n".join(logs))
    assert leaked(search_each(haystack, {"typed code": typed_code_run.code})) == {}


def test_whatsapp_manager_link_names_the_waba_and_the_number(
    page: Page, deployment: Deployment, typed_code_run: TypedCodeRun, screenshots: Screenshots
) -> None:
    number = typed_code_run.number
    page.goto(f"/dags/{ONBOARDING}/runs/{typed_code_run.run_id}/tasks/create_phone_number/details")
    link = page.get_by_role("link", name="WhatsApp Manager")
    expect(page.get_by_text("Extra Links")).to_be_visible()
    expect(link).to_be_visible()
    screenshots.take(page, "06-whatsapp-manager-link")
    with page.expect_popup() as opened:
        link.click()
    manager = opened.value
    expect(manager.locator("#waba_id")).to_have_text(deployment.sandbox.default_waba_id)
    expect(manager.locator("#phone_number_id")).to_have_text(number["id"])
    query = parse_qs(urlsplit(manager.url).query)
    assert urlsplit(manager.url).hostname == "business.facebook.com", manager.url
    assert query == {"waba_id": [deployment.sandbox.default_waba_id], "phone_number_id": [number["id"]]}, query
    screenshots.take(manager, "07-whatsapp-manager")


# ----------------------------------------------------------------------------- a wrong code, and again


def test_wrong_code_fails_verify_plainly_and_can_be_entered_again(
    page: Page, deployment: Deployment, screenshots: Screenshots
) -> None:
    airflow, run_id, phone_number = deployment.airflow, "wrong_code_by_hand", "5550190102"
    trigger_by_hand(page, None, run_id, phone_number)
    wait_until_parked(airflow, run_id, "enter_code", "awaiting_input")
    number = the_number(deployment, phone_number)
    code = deployment.sandbox.last_code(number["id"])
    assert code is not None, number
    assert code != WRONG_CODE
    enter_code(page, None, run_id, WRONG_CODE)
    assert airflow.wait_for_run(ONBOARDING, run_id, timeout=300) == "failed"

    page.goto(f"/dags/{ONBOARDING}/runs/{run_id}/tasks/verify_code")
    message = page.get_by_text(WRONG_CODE_TEXT)
    expect(message).to_contain_text(f"{WRONG_CODE_TEXT} {number['id']}: it is wrong or has expired")
    expect(message).to_contain_text("Nothing was registered. To enter the code again, clear the task that supplies it")
    # Graph's error follows for support (code, fbtrace_id); its stack trace folds away.
    error = page.locator("details").filter(has_text="GraphPermanentError")
    expect(error).to_contain_text("code=100")
    expect(error).to_contain_text("fbtrace_id=")
    page.keyboard.press("w")  # wrap long lines
    error.locator("summary").first.click()
    expect(error).not_to_have_attribute("open", "")
    screenshots.take(page, "08-wrong-code")
    on_page = Haystack(known_ids=(number["id"],))
    on_page.add("verify_code log page", page.content())
    assert leaked(search_each(on_page, {"wrong code": WRONG_CODE, "code": code})) == {}

    number = the_number(deployment, phone_number)
    assert number["code_verification_status"] == "NOT_VERIFIED" and number["status"] != "CONNECTED", number
    assert deployment.sandbox.register_calls(number["id"]) == 0
    expect_task_states(page, run_id, {"verify_code": "Failed", "register": "Upstream Failed"})

    # What the docs say to do: clear enter_code with its downstream tasks, and type the code again.
    page.goto(f"/dags/{ONBOARDING}/runs/{run_id}/tasks/enter_code")
    page.get_by_role("button", name="Press shift+c to clear").click()
    dialog = page.get_by_role("dialog")
    for task_id in ("enter_code", "verify_code", "register", "wait_connected", "summary"):
        expect(dialog.get_by_role("row").filter(has_text=task_id)).to_have_count(1)
    screenshots.take(page, "09-clear-enter-code")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden()
    wait_until_parked(airflow, run_id, "enter_code", "awaiting_input", try_number=2)
    enter_code(page, None, run_id, code)
    connect_when_waited_for(deployment, run_id, number["id"])
    assert airflow.wait_for_run(ONBOARDING, run_id, timeout=300) == "success"
    expect_task_states(page, run_id, {task_id: "Success" for task_id in TASKS})
    screenshots.take(page, "10-code-entered-again")
    number = the_number(deployment, phone_number)
    assert number["status"] == "CONNECTED", number


# ----------------------------------------------------------------------------- the connection form


def test_connection_form_and_its_test_button(page: Page, deployment: Deployment, screenshots: Screenshots) -> None:
    airflow, sandbox, conn_id = deployment.airflow, deployment.sandbox, "whatsapp_by_hand"
    page.goto("/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill(conn_id)
    dialog.get_by_role("combobox").fill("WhatsApp Business")
    page.keyboard.press("Enter")

    declared = CONNECTION_UI_FIELD_BEHAVIOUR
    for label in declared["relabeling"].values():
        expect(dialog.get_by_text(label, exact=True)).to_be_visible()
    for field, placeholder in declared["placeholders"].items():
        expect(dialog.locator(f"input[name={field}]")).to_have_attribute("placeholder", placeholder)
    for field in declared["hidden-fields"]:
        expect(dialog.locator(f"[name={field}]")).to_have_count(0)
        expect(dialog.get_by_text(field.capitalize(), exact=True)).to_have_count(0)
    expect(dialog.locator("input[name=password]")).to_have_attribute("type", "password")
    screenshots.take(page, "11-connection-form")
    dialog.locator("input[name=host]").fill(sandbox.url)
    dialog.locator("input[name=password]").fill(sandbox.token)

    # One section of the form is open at a time: opening the extras folds the standard fields.
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for name, field in CONNECTION_FIELDS.items():
        expect(dialog.get_by_text(field["label"], exact=True)).to_be_visible()
        expect(dialog.get_by_text(field["description"], exact=True)).to_be_visible()
        if field["schema"].get("format") == "password":
            expect(dialog.locator(f"#element_{name}")).to_have_attribute("type", "password")
    expect(dialog.locator("#element_api_version")).to_have_value(CONNECTION_FIELDS["api_version"]["schema"]["default"])
    dialog.locator("#element_waba_id").fill(sandbox.default_waba_id)
    dialog.locator("#element_app_secret").fill(str(sandbox.app_secret))
    screenshots.take(page, "12-connection-extra-fields")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    row = page.get_by_role("row").filter(has_text=conn_id)
    expect(row).to_contain_text("whatsapp_business")
    try:
        # Airflow 3.3.2's Test button sends port 0 for a connection without one and is refused
        # (apache/airflow#73298); the port of the sandbox's address stands in until the fix ships.
        port = {"connection_id": conn_id, "conn_type": "whatsapp_business", "port": sandbox.port}
        airflow.api("PATCH", f"/connections/{conn_id}", params={"update_mask": "port"}, json=port)
        page.reload()
        row.get_by_role("button", name="Test Connection").click()
        expect(page.get_by_text("Test Connection Successful")).to_be_visible()
        expect(page.get_by_text("Connected to WhatsApp Business Account")).to_contain_text(sandbox.default_waba_id)
        screenshots.take(page, "13-connection-test-succeeded")

        row.get_by_role("button", name="Edit Connection").click()
        dialog.locator("input[name=password]").fill(BAD_TOKEN)
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        # One message at a time on the screenshot: the "updated" one goes away by itself once the
        # pointer, left where Save was, no longer rests on it.
        page.mouse.move(0, 0)
        expect(page.get_by_text("Connection has been successfully updated.")).to_be_hidden()
        row.get_by_role("button", name="Test Connection").click()
        expect(page.get_by_text("Test Connection Failed")).to_be_visible()
        failure = page.get_by_text("Graph API error:")
        expect(failure).to_contain_text("code=190")
        expect(failure).to_contain_text("fbtrace_id=")
        screenshots.take(page, "14-connection-test-failed")
        html = page.content()
        assert BAD_TOKEN not in html and sandbox.token not in html, "a token is on the page"
        assert str(sandbox.app_secret) not in html, "the app secret is on the page"
    finally:
        airflow.api("DELETE", f"/connections/{conn_id}")
