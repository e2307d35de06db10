"""An Airflow home of its own for a test session: a directory, a SQLite metadata database, a DAG folder.

Airflow reads ``AIRFLOW_HOME`` and its configuration once, when it is first imported, so the
environment is built before anything imports Airflow and then left alone for the session. Standard
library only: importing this module must not import Airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

# What an isolated session drops from the environment it was started in: the configuration
# overrides, the config file, and the connections and Variables of the shell (the sandbox's
# pasted exports among them), so that a test sees Airflow's defaults and the fixtures' values only.
INHERITED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")
INHERITED_NAMES = ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
MIGRATE_TIMEOUT = 900.0
# The home this process entered, if any: the environment is process-wide, so is this.
_entered: AirflowTestHome | None = None


class AirflowHomeError(RuntimeError):
    """The isolated Airflow home could not be set up (bad configuration, or the migration failed)."""


@dataclass
class AirflowTestHome:
    """
    An Airflow home made for one test session.

    :param path: the directory (``AIRFLOW_HOME``); Airflow writes its ``airflow.cfg`` and task logs
        there.
    :param dags_folder: the DAG folder (``[core] dags_folder``) the DAGs are run from.
    :param config: the configuration set for the session, as ``AIRFLOW__SECTION__KEY`` variables.
    """

    path: Path
    dags_folder: Path
    config: dict[str, str] = field(default_factory=dict)
    _saved: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    @property
    def database(self) -> Path:
        """The SQLite file of the metadata database."""
        return self.path / "airflow.db"

    @property
    def environment(self) -> dict[str, str]:
        """The variables this home sets: where it is, its database, its DAG folder, and the config."""
        return {
            "AIRFLOW_HOME": str(self.path),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.database}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **self.config,
        }

    def enter(self, environ: MutableMapping[str, str] = os.environ) -> None:
        """Replace the Airflow part of ``environ`` by this home's; :meth:`leave` puts it back."""
        inherited = [name for name in environ if name.startswith(INHERITED_PREFIXES) or name in INHERITED_NAMES]
        self._saved = {name: environ.pop(name) for name in inherited}
        environ.update(self.environment)
        if environ is os.environ:
            global _entered
            _entered = self

    def leave(self, environ: MutableMapping[str, str] = os.environ) -> None:
        """Restore the environment :meth:`enter` found and delete the directory."""
        for name in [name for name in environ if name.startswith(INHERITED_PREFIXES) or name in INHERITED_NAMES]:
            del environ[name]
        environ.update(self._saved)
        shutil.rmtree(self.path, ignore_errors=True)
        if environ is os.environ:
            global _entered
            _entered = None

    def migrate(self) -> None:
        """Create the metadata database's tables (``airflow db migrate``), in a separate process."""
        try:
            done = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                capture_output=True,
                text=True,
                timeout=MIGRATE_TIMEOUT,
                env={**os.environ, **self.environment},
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            took = f"took more than {error.timeout:.0f} s"
            raise AirflowHomeError(f"`airflow db migrate` in {self.path} {took}") from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise AirflowHomeError(f"`airflow db migrate` in {self.path} exited {done.returncode}:\n{tail}")


def entered_home() -> AirflowTestHome | None:
    """The isolated home this process is in (the pytest plugin entered it as pytest started), if any."""
    return _entered


def config_variables(lines: Iterable[str]) -> dict[str, str]:
    """``section.key = value`` lines as ``AIRFLOW__SECTION__KEY`` variables.

    :param lines: one setting a line; blank lines and lines starting with ``#`` are skipped.
    """
    variables: dict[str, str] = {}
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, equals, value = text.partition("=")
        section, dot, key = name.strip().partition(".")
        if not equals or not dot or not section or not key.strip():
            raise AirflowHomeError(f"whatsapp_airflow_config: {text!r} is not `section.key = value`")
        variables[f"AIRFLOW__{section.upper()}__{key.strip().upper()}"] = value.strip()
    return variables


def new_airflow_home(dags_folder: Path, config: Mapping[str, str] | None = None) -> AirflowTestHome:
    """A new, empty home in a temporary directory, running the DAGs of ``dags_folder``.

    :param dags_folder: an existing directory.
    :param config: further ``AIRFLOW__SECTION__KEY`` variables.
    """
    if not dags_folder.is_dir():
        raise AirflowHomeError(f"whatsapp_dags_folder: {dags_folder} is not a directory")
    path = Path(tempfile.mkdtemp(prefix="whatsapp-airflow-home-"))
    return AirflowTestHome(path=path, dags_folder=dags_folder.resolve(), config=dict(config or {}))
