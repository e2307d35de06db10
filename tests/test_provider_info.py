"""Airflow discovers the provider: provider info, CLI listings, the connection form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_whatsapp.get_provider_info import get_provider_info
from tests.airflow_versions import AIRFLOW_V_3_2_PLUS, AIRFLOW_VERSION, connection_form, connection_form_needs_fab

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

AIRFLOW = str(Path(sys.executable).parent / "airflow")
HOOK = "airflow_provider_whatsapp.hooks.whatsapp.WhatsAppBusinessHook"


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


@pytest.fixture(scope="module")
def cli() -> dict[str, str]:
    """Run the provider listings in parallel: each `airflow` start costs seconds."""
    commands = {
        "get": ["providers", "get", "airflow-provider-whatsapp", "--full", "-o", "json"],
        "hooks": ["providers", "hooks", "-o", "json"],
        "links": ["providers", "links", "-o", "json"],
        "triggers": ["providers", "triggers", "-o", "json"],
    }
    running = {
        name: subprocess.Popen(
            [AIRFLOW, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
        )
        for name, args in commands.items()
    }
    outputs = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, f"airflow {' '.join(commands[name])}: {err[-2000:]}"
        outputs[name] = out
    return outputs


def _json(text: str) -> list[dict[str, str]]:
    # Some Airflow versions print log lines (which also start with "[") to stdout before the JSON.
    [listing] = [line for line in text.splitlines() if line.startswith(("[{", "[]"))]
    return json.loads(listing)


def test_providers_get(cli: dict[str, str]) -> None:
    [info] = _json(cli["get"])
    assert info["package-name"] == "airflow-provider-whatsapp"
    assert info["versions"] == ["0.1.0"]
    [connection_type] = info["connection-types"]
    assert connection_type["connection-type"] == "whatsapp_business"
    assert connection_type["hook-class-name"] == HOOK
    assert set(connection_type["conn-fields"]) == {"api_version", "waba_id", "app_secret", "timeout"}


def test_providers_hooks_lists_the_connection_type(cli: dict[str, str]) -> None:
    rows = {row["connection_type"]: row for row in _json(cli["hooks"])}
    assert rows["whatsapp_business"]["class"] == HOOK
    assert rows["whatsapp_business"]["package_name"] == "airflow-provider-whatsapp"


def test_providers_links_and_triggers(cli: dict[str, str]) -> None:
    links = [row["extra_link_class_name"] for row in _json(cli["links"])]
    assert "airflow_provider_whatsapp.links.whatsapp_manager.WhatsAppManagerPhoneNumberLink" in links
    triggers = [row for row in _json(cli["triggers"]) if row["package_name"] == "airflow-provider-whatsapp"]
    assert triggers
    assert "airflow_provider_whatsapp.triggers.phone_numbers" in json.dumps(triggers)


@pytest.mark.skipif(
    connection_form_needs_fab(),
    reason=f"Airflow {AIRFLOW_VERSION} builds no provider's connection form without Flask-AppBuilder",
)
def test_connection_form_hides_and_relabels_fields() -> None:
    """From the provider info on Airflow 3.2 and later, from ``get_ui_field_behaviour`` before."""
    _widgets, behaviours = connection_form()
    behaviour = behaviours["whatsapp_business"]
    assert set(behaviour["hidden_fields"]) == {"schema", "port", "login"}
    assert behaviour["relabeling"]["password"] == "Access token"


@pytest.mark.skipif(
    not AIRFLOW_V_3_2_PLUS,
    reason=f"conn-fields form inputs need Airflow 3.2+ (this is {AIRFLOW_VERSION}): the extras go in the Extra JSON",
)
def test_connection_form_extra_fields() -> None:
    all_widgets, _behaviours = connection_form()
    widgets = {name: widget for name, widget in all_widgets.items() if "whatsapp" in name}
    assert set(widgets) == {
        f"extra__whatsapp_business__{field}" for field in ("api_version", "waba_id", "app_secret", "timeout")
    }
    assert widgets["extra__whatsapp_business__app_secret"].is_sensitive
    assert widgets["extra__whatsapp_business__api_version"].field["schema"]["title"] == "Graph API version"
