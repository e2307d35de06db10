"""The compatibility run's checks of the distributions themselves: what users download from the index.

Builds the sdist and the wheel, checks them with ``twine check --strict``, checks what the wheel
holds (the licences, the sandbox's JSON schema, ``py.typed``) and its metadata (licence
expression, project URLs, classifiers, the Airflow range), and that an installer refuses the
wheel beside an Airflow older than the range.
"""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UV = REPO / ".venv" / "bin" / "uv"
TWINE = REPO / ".venv" / "bin" / "twine"
COMMAND_TIMEOUT = 900
# The wheel ships the sandbox's request and response schemas, derived from Meta's MIT-licensed
# OpenAPI description: the expression names both licences (pyproject.toml says why).
LICENSE_EXPRESSION = "Apache-2.0 AND MIT"
AIRFLOW_REQUIREMENT = "apache-airflow<4,>=2.11.0"
# The newest Airflow below the range: an installer must refuse the wheel beside it.
TOO_OLD_AIRFLOW = "2.10.5"
REQUIRED_IN_WHEEL = (
    "airflow_provider_whatsapp/py.typed",
    "airflow_provider_whatsapp/sandbox/phone_number_schemas.json",
    "airflow_provider_whatsapp/sandbox/LICENSE.meta-openapi",
    "licenses/LICENSE",
    "licenses/airflow_provider_whatsapp/sandbox/LICENSE.meta-openapi",
)
REQUIRED_CLASSIFIERS = (
    "Typing :: Typed",
    "Framework :: Apache Airflow",
    "Framework :: Apache Airflow :: Provider",
    "Programming Language :: Python :: 3.11",
)
PROJECT_URL_LABELS = ("Documentation", "Changelog", "Source", "Issues")


def run(command: Sequence[str | Path], log: Path, timeout: float = COMMAND_TIMEOUT, **kwargs: object) -> int:
    """Run a command with its output appended to ``log``, for at most ``timeout`` seconds; return its exit status."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, command))}\n")
        out.flush()
        try:
            return subprocess.run(
                [str(part) for part in command],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **kwargs,  # type: ignore[arg-type]
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"timed out after {timeout:.0f} s\n")
            return 124


def build(dist: Path, log: Path) -> list[str]:
    """Build the sdist and the wheel into ``dist``; return the problems found in them."""
    if run([UV, "build", "--quiet", "--sdist", "--wheel", "--out-dir", dist, REPO], log) != 0:
        return [f"the build failed (see {log})"]
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"the build made {len(wheels)} wheels and {len(sdists)} sdists (see {log})"]
    problems = []
    if run([TWINE, "check", "--strict", *wheels, *sdists], log) != 0:
        problems.append(f"twine check failed (see {log})")
    with zipfile.ZipFile(wheels[0]) as archive:
        names = archive.namelist()
        [metadata_name] = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    for required in REQUIRED_IN_WHEEL:
        if not any(name == required or name.endswith(".dist-info/" + required) for name in names):
            problems.append(f"{required} is not in {wheels[0].name}")
    problems += metadata_problems(metadata)
    listing = subprocess.run(
        ["tar", "-tzf", str(sdists[0])], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if not any(line.endswith("/LICENSE") for line in listing.stdout.splitlines()):
        problems.append(f"LICENSE is not in {sdists[0].name}")
    return problems


def metadata_problems(metadata: str) -> list[str]:
    """What the wheel's METADATA lacks of what the package index and its users read."""
    from trove_classifiers import classifiers as known_classifiers

    fields: dict[str, list[str]] = {}
    for line in metadata.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(": ")
        fields.setdefault(name, []).append(value)
    problems = []
    if fields.get("License-Expression") != [LICENSE_EXPRESSION]:
        problems.append(f"License-Expression is {fields.get('License-Expression')}, not {LICENSE_EXPRESSION!r}")
    urls = {value.split(", ", 1)[0] for value in fields.get("Project-URL", [])}
    problems += [f"no {label} URL" for label in PROJECT_URL_LABELS if label not in urls]
    classifiers = fields.get("Classifier", [])
    problems += [f"unknown classifier {value!r}" for value in classifiers if value not in known_classifiers]
    problems += [f"no classifier {wanted!r}" for wanted in REQUIRED_CLASSIFIERS if wanted not in classifiers]
    if not any(value.startswith("Development Status :: ") for value in classifiers):
        problems.append("no Development Status classifier")
    if AIRFLOW_REQUIREMENT not in fields.get("Requires-Dist", []):
        problems.append(f"the Airflow range is not {AIRFLOW_REQUIREMENT}: {fields.get('Requires-Dist')}")
    return problems


def refused_beside_old_airflow(wheel: Path, work: Path, log: Path) -> list[str]:
    """An installer must refuse the wheel beside an Airflow below the range, naming the range."""
    requirements = work / "old-airflow.in"
    requirements.write_text(f"apache-airflow=={TOO_OLD_AIRFLOW}\nairflow-provider-whatsapp @ {wheel.as_uri()}\n")
    before = log.stat().st_size if log.exists() else 0
    status = run([UV, "pip", "compile", "--quiet", "--python-version", "3.11", requirements], log)
    with log.open() as text:
        text.seek(before)
        answer = text.read()
    if status == 0 or "apache-airflow>=2.11.0" not in answer:
        return [f"the wheel was not refused beside Airflow {TOO_OLD_AIRFLOW} (see {log})"]
    return []
