"""docs/compatibility.rst says, for each feature, what it does on each Airflow version: check the
column of the Airflow running these tests, and the version check for Airflows outside the range."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.airflow_versions import AIRFLOW_VERSION, connection_form, connection_form_needs_fab, dag_bag

# Exercises the provider through Airflow: run on every supported version (scripts/compat).
pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "docs" / "compatibility.rst"


def documented_features() -> dict[str, str]:
    """Feature to the table's value for the running Airflow's ``major.minor``."""
    rows: list[list[str]] = []
    for line in TABLE.read_text().splitlines():
        if line.startswith("   * - "):
            rows.append([line.removeprefix("   * - ").strip()])
        elif line.startswith("     - ") and rows:
            rows[-1].append(line.removeprefix("     - ").strip())
    header, *features = rows
    column = ".".join(AIRFLOW_VERSION.split(".")[:2])
    assert column in header, f"docs/compatibility.rst has no column for Airflow {column}: {header}"
    index = header.index(column)
    assert all(len(row) == len(header) for row in features), "every row needs one cell per version"
    return {row[0]: row[index] for row in features}


def operators_sensor_and_link() -> str:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_whatsapp.operators.phone_numbers import CreatePhoneNumberOperator
    from airflow_provider_whatsapp.sensors.phone_numbers import PhoneNumberStatusSensor

    with DAG("compatibility_probe", schedule=None):
        create = CreatePhoneNumberOperator(task_id="create", cc="1", phone_number="5550100001")
        sensor = PhoneNumberStatusSensor(task_id="wait", phone_number_id=create.output, target={"status": "CONNECTED"})
    [link] = create.operator_extra_links
    assert link.xcom_key == "_link_WhatsAppManagerPhoneNumberLink"
    assert sensor in create.downstream_list
    return "yes"


def deferred_status_sensor() -> str:
    from airflow.providers.common.compat.module_loading import import_string
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_whatsapp.sensors.phone_numbers import PhoneNumberStatusSensor

    sensor = PhoneNumberStatusSensor(
        task_id="wait", phone_number_id="1", target={"status": "CONNECTED"}, deferrable=True
    )
    classpath, kwargs = sensor.build_trigger("106540352242922").serialize()
    trigger = import_string(classpath)(**kwargs)
    return "yes" if isinstance(trigger, BaseTrigger) else f"not a trigger: {trigger!r}"


def secrets_masked() -> str:
    from airflow.providers.common.compat.sdk import mask_secret, redact

    mask_secret("EAAcompatibilitytoken")
    return "yes" if "EAAcompatibilitytoken" not in str(redact("token EAAcompatibilitytoken")) else "no"


def form_hides_and_relabels() -> str:
    _widgets, behaviours = connection_form()
    if not behaviours and connection_form_needs_fab():
        return "needs FAB"
    behaviour = behaviours.get("whatsapp_business", {})
    relabelled = behaviour.get("relabeling", {}).get("password") == "Access token"
    return "yes" if relabelled and "login" in behaviour.get("hidden_fields", []) else f"no: {behaviour}"


def form_inputs_for_extras() -> str:
    widgets, _behaviours = connection_form()
    ours = {name for name in widgets if name.startswith("extra__whatsapp_business__")}
    return "yes" if len(ours) == 4 else "Extra JSON" if not ours else f"partly: {sorted(ours)}"


def typed_in_code() -> str:
    dag = dag_bag(str(REPO / "dags")).get_dag("example_whatsapp_onboarding")
    enter_code = dag.get_task("enter_code")
    if type(enter_code).__name__ == "HITLEntryOperator":
        return "yes"
    assert "Airflow 3.1" in (enter_code.doc_md or ""), "the placeholder should say why it is empty"
    return "skipped"


OBSERVED: dict[str, Callable[[], str]] = {
    "Operators, status sensor and WhatsApp Manager link": operators_sensor_and_link,
    "Deferred status sensor (triggerer)": deferred_status_sensor,
    "Secrets (token, app secret, PIN, code) masked in logs": secrets_masked,
    "Connection form hides and relabels fields": form_hides_and_relabels,
    "Connection form inputs for the extras": form_inputs_for_extras,
    "Typed-in verification code in ``example_whatsapp_onboarding``": typed_in_code,
}


def test_every_documented_feature_is_checked() -> None:
    assert set(documented_features()) == set(OBSERVED)


@pytest.mark.parametrize("feature", sorted(OBSERVED))
def test_feature_behaves_as_documented(feature: str, airflow_db: str) -> None:
    assert OBSERVED[feature]() == documented_features()[feature], f"Airflow {AIRFLOW_VERSION}: {feature}"


def import_provider(extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``import airflow_provider_whatsapp`` in a new interpreter, ``extra_path`` first on its path."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), *sys.path])
    return subprocess.run(
        [sys.executable, "-c", "import airflow_provider_whatsapp"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("version", ["2.10.5", "4.0.0"])
def test_import_on_unsupported_airflow_names_the_supported_versions(tmp_path: Path, version: str) -> None:
    """An Airflow installed by other means, outside the range: one clear error at import."""
    # Airflow's version is read from apache-airflow-core (3.x) or apache-airflow (2.x): a fake core
    # found first on the path stands for an unsupported Airflow on either.
    metadata = tmp_path / f"apache_airflow_core-{version}.dist-info" / "METADATA"
    metadata.parent.mkdir()
    metadata.write_text(f"Metadata-Version: 2.1\nName: apache-airflow-core\nVersion: {version}\n")
    result = import_provider(tmp_path)
    assert result.returncode != 0
    [error] = [line for line in result.stderr.splitlines() if line.startswith("RuntimeError")]
    assert f"this is Apache Airflow {version}" in error
    assert re.search(r">=2\.11\.0,<4 \(2\.11\.x and 3\.x\)", error), error


def test_supported_airflow_imports_cleanly() -> None:
    result = import_provider()
    assert result.returncode == 0, result.stderr
