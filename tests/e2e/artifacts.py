"""Everything a deployment left behind, gathered to be searched for secrets: the log files of every
component and task (triggers' included), each task instance's rendered fields, and every XCom as
the metadata database holds it. Each source is shown to hold what it should before it is searched:
a source that is empty, or that the provider never wrote to, would be searched for nothing."""

from __future__ import annotations

import json
import re
from typing import Any

from devtools.airflow_deployment import AirflowDeployment
from tests.secret_search import PROVIDER_LINE, Haystack

# A Graph ID (a phone number's): what the runs' XComs hand from step to step.
GRAPH_ID = re.compile(r"\b\d{15}\b")
# The masked PIN and code: what the rendered fields of the verify and register steps show.
MASKED = re.compile(r"\*\*\*")
ANYTHING = re.compile(r"\S")


def deployment_haystack(airflow: AirflowDeployment, task_instances: list[dict[str, Any]]) -> Haystack:
    """The sources of a deployment after its runs, ``task_instances`` being theirs (as the REST
    API lists them, rendered fields included)."""
    haystack = Haystack()
    logs = sorted(path for path in airflow.home.rglob("*.log") if "pgdata" not in path.parts)
    task_logs = [path for path in logs if path.is_relative_to(airflow.home / "logs")]
    for path in logs:
        if path not in task_logs:
            haystack.add_output(f"component log {path.name}", path.read_text(errors="replace"), proof=ANYTHING)
    haystack.add_output("task and trigger logs", "\n".join(path.read_text(errors="replace") for path in task_logs))
    rendered = [
        {"task": f"{ti['dag_id']} {ti['task_id']}[{ti['map_index']}]", "fields": ti.get("rendered_fields")}
        for ti in task_instances
    ]
    haystack.add_output("rendered fields", json.dumps(rendered, default=str), proof=MASKED)
    run_ids = sorted({ti["dag_run_id"] for ti in task_instances})
    rows = airflow.sql(
        None, "SELECT dag_id, run_id, task_id, map_index, key, value::text FROM xcom WHERE run_id = ANY(%s)", [run_ids]
    )
    haystack.add_output("XComs (metadata database)", json.dumps(rows, default=str), proof=GRAPH_ID)
    return haystack


__all__ = ["PROVIDER_LINE", "deployment_haystack"]
