"""A real Airflow 3.3 deployment on 127.0.0.1 for the end-to-end tests, the benchmarks and ``scripts/demo --ui``.

``AirflowDeployment`` starts PostgreSQL (Debian's binaries, run as the ``postgres`` user when we
are root), migrates the metadata database, then starts ``airflow api-server``, ``scheduler``,
``dag-processor`` and ``triggerer`` as separate processes with the LocalExecutor, each logging to
its own file. ``api(method, path, ...)`` calls the REST API with a token. Every wait is bounded,
and ``stop()`` (also on ``__exit__``) ends every process group and the database, even after a
failure. When PostgreSQL cannot run here, it falls back to SQLite and says so in ``database``.
Without ``login`` every visitor of the UI is an admin; with it, the UI asks for that user.

    with AirflowDeployment(env={"AIRFLOW_CONN_WHATSAPP_DEFAULT": ...}) as airflow:
        run = airflow.trigger("example_whatsapp_onboarding", conf={...})
        airflow.wait_for_run("example_whatsapp_onboarding", run["dag_run_id"], timeout=180)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]


def _newest_postgres_bin() -> Path:
    """Debian installs each major version under /usr/lib/postgresql/<major>/bin."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _newest_postgres_bin()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowApiError(AssertionError):
    """The REST API answered an error status (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# Statuses of what is not there yet (a run's task not expanded yet: 404) or a component still
# starting (5xx): worth asking again. Any other error answer will not change by waiting.
NOT_YET_STATUSES = frozenset({404, 409, 500, 502, 503, 504})


def _not_yet(error: Exception) -> bool:
    if isinstance(error, AirflowApiError):
        return error.status in NOT_YET_STATUSES
    # A component not up yet (connection refused, a log file not written yet).
    return isinstance(error, OSError)


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; bounded by ``timeout`` seconds.

    ``check`` may fail while what it reads is not there yet (a component not up, a 404 from the
    API): it is asked again. Any other exception (a failed assertion, a component that exited) is
    raised at once: waiting would only turn it into a timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:
            if not _not_yet(error):
                raise
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})")


def session_members(session_id: int) -> list[int]:
    """The live processes of a session (a component is started as one, and its children stay in
    it); zombies, already dead, are left out."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The fields after the command name, which may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session_id and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def _cpu_of(pid: int) -> float:
    """User and system CPU seconds of a process and of its reaped children (0 once it is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the command name.
        return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _children_of(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def kill_session(session_id: int, timeout: float = 30) -> None:
    """SIGKILL every process of a session, whatever its process group; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = session_members(session_id)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise TimeoutError(f"processes of session {session_id} still alive after {timeout:.0f}s: {members}")


class AirflowDeployment:
    """Scheduler, dag-processor, triggerer and API server on 127.0.0.1, on PostgreSQL.

    :param env: extra environment for every component (connections, variables, settings).
    :param dags_folder: the DAGs to serve; default this repository's ``dags/``.
    :param parallelism: LocalExecutor slots.
    :param login: ``(username, password)`` of the one admin the UI and the API accept; ``None``
        lets everyone in as admin, without a login page.
    :param databases: more PostgreSQL databases to create beside the metadata database, by the
        Airflow connection ID that reaches them (set for every component); see :meth:`sql`.
    """

    executor = "LocalExecutor"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        dags_folder: Path | None = None,
        parallelism: int = 8,
        login: tuple[str, str] | None = None,
        databases: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="whatsapp-e2e-airflow-"))
        self.dags_folder = dags_folder or REPO / "dags"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.extra_env = dict(env or {})
        self.parallelism = parallelism
        self.login = login
        self.databases = dict(databases or {})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # What else logs beside the components, in ``where_to_look``.
        self.services: list[str] = ["postgres"]
        self.database = "postgresql"
        self._pg_data: Path | None = None
        self._pg_port: int | None = None
        self._token: str | None = None
        self.session = requests.Session()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> AirflowDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_path(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def where_to_look(self) -> str:
        logs = ", ".join(str(self.log_path(c)) for c in (*self.component_commands(), *self.services))
        return f"Airflow home {self.home}; component logs: {logs}; task logs under {self.home / 'logs'}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags_folder),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR=self.executor,
            AIRFLOW__CORE__PARALLELISM=str(self.parallelism),
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=str(self.login is None),
            AIRFLOW__CORE__TEST_CONNECTION="Enabled",
            AIRFLOW__API__PORT=str(self.api_port),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__BASE_URL=self.api_url,
            AIRFLOW__API_AUTH__JWT_SECRET="whatsapp-e2e-jwt-secret-not-for-production",
            AIRFLOW__API__SECRET_KEY="whatsapp-e2e-secret-key",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT="300",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3600",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=self._database_url(),
            PYTHONUNBUFFERED="1",
        )
        if self.database == "postgresql":
            for conn_id, name in self.databases.items():
                env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
                    {"conn_type": "postgres", "host": "127.0.0.1", "port": self._pg_port, "login": "airflow",
                     "password": "airflow", "schema": name}
                )  # fmt: skip
        if self.login is not None:
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{self.login[0]}:admin"
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(self._passwords_file())
        env.update(self.extra_env)
        return env

    def _database_url(self) -> str:
        if self.database == "postgresql":
            return f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{self._pg_port}/airflow"
        return f"sqlite:///{self.home}/airflow.db"

    def _passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def start(self) -> None:
        self._start_postgres()
        if self.login is not None:
            # Written before the API server starts, so that it does not generate a password of its own.
            passwords = self._passwords_file()
            passwords.write_text(json.dumps({self.login[0]: self.login[1]}))
            passwords.chmod(0o600)
        airflow = str(Path(sys.executable).parent / "airflow")
        with self.log_path("db-migrate").open("wb") as log:
            subprocess.run(
                [airflow, "db", "migrate"], env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                check=True, timeout=300,
            )  # fmt: skip
        for component in self.component_commands():
            self.start_component(component)
        wait_until(
            lambda: self.session.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).ok, 180, "the API server"
        )
        wait_until(self._components_healthy, 120, "scheduler, dag-processor and triggerer heartbeats")

    def component_commands(self) -> dict[str, list[str]]:
        """Each component's name (its log's) and the ``airflow`` arguments that start it."""
        return {
            "api-server": ["api-server", "--port", str(self.api_port), "--host", "127.0.0.1"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }

    def component_environment(self, component: str) -> dict[str, str]:
        """The environment ``component`` starts with."""
        return self.environment()

    def start_component(self, component: str) -> None:
        """Start (or start again) one component, in a session of its own, logging to its file (appended)."""
        airflow = str(Path(sys.executable).parent / "airflow")
        log = self.log_path(component).open("ab")
        self.processes[component] = subprocess.Popen(
            [airflow, *self.component_commands()[component]],
            env=self.component_environment(component),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child holds its own copy

    def exited_components(self) -> list[str]:
        """The components whose process has ended, each with its exit code."""
        return [
            f"{name} ({process.returncode})" for name, process in self.processes.items() if process.poll() is not None
        ]

    def _components_healthy(self) -> bool:
        exited = self.exited_components()
        if exited:
            raise RuntimeError(f"{', '.join(exited)} exited; {self.where_to_look()}")
        health = self.session.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
        return all(
            health.get(part, {}).get("status") == "healthy" for part in ("scheduler", "triggerer", "dag_processor")
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            # A task's supervisor puts the task in a process group of its own: whatever is left of
            # the component's session goes too.
            kill_session(process.pid)
        self.processes.clear()
        self._stop_postgres()
        self.session.close()

    def wait_for_log(self, component: str, pattern: str, timeout: float) -> str:
        """Wait until a line of ``component``'s log matches the regular expression ``pattern``; return it."""
        regex = re.compile(pattern)

        def matching_line() -> str | None:
            text = self.log_path(component).read_text(errors="replace")
            found = regex.search(text)
            return found.group(0) if found else None

        line: str = wait_until(matching_line, timeout, f"{pattern!r} in the {component} log")
        return line

    # ------------------------------------------------------------------ PostgreSQL

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user and system) each component has spent so far, with what it reaped.

        A component is its session: its process, and every descendant still alive (a worker, an
        API server process). What a descendant that ended spent (a task process, its supervisor)
        is in its parent's ``children`` times once reaped, so nothing is counted twice or lost.
        PostgreSQL is its postmaster, whose backends are its children.
        """
        spent: dict[str, float] = {}
        for name, process in self.processes.items():
            if process.poll() is None:
                spent[name] = sum(_cpu_of(pid) for pid in session_members(process.pid))
        if self._pg_data is not None and (self._pg_data / "postmaster.pid").exists():
            postmaster = int((self._pg_data / "postmaster.pid").read_text().split()[0])
            spent["postgres"] = _cpu_of(postmaster) + sum(_cpu_of(pid) for pid in _children_of(postmaster))
        return spent

    def _as_postgres(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    def _start_postgres(self) -> None:
        if not (PG_BIN / "pg_ctl").exists() or (os.geteuid() == 0 and shutil.which("runuser") is None):
            self.database = "sqlite"
            print("PostgreSQL binaries not found: falling back to SQLite for the metadata database", file=sys.stderr)
            return
        data = self.home / "pgdata"
        data.mkdir()
        self._pg_data = data
        self._pg_port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")
            shutil.chown(data, "postgres")
            self.home.chmod(0o777)
        log = self.log_path("postgres")
        log.touch()
        log.chmod(0o666)
        run = lambda args: subprocess.run(  # noqa: E731
            self._as_postgres(args), check=True, capture_output=True, timeout=120, cwd="/tmp"
        )
        run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        run(
            [
                str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                "-o", f"-h 127.0.0.1 -p {self._pg_port} -k /tmp -c max_connections=200 -c fsync=off", "start",
            ]
        )  # fmt: skip
        psql = [
            str(PG_BIN / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self._pg_port),
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        run([*psql, "-c", "CREATE USER airflow WITH PASSWORD 'airflow'"])
        for name in ("airflow", *self.databases.values()):
            run([*psql, "-c", f"CREATE DATABASE {name} OWNER airflow"])

    def sql(self, conn_id: str | None, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``%s`` placeholders) on a database of ``databases`` (``None``: the
        metadata database), committed; its rows, if any."""
        import psycopg2

        database = "airflow" if conn_id is None else self.databases[conn_id]
        connection = psycopg2.connect(
            host="127.0.0.1", port=self._pg_port, user="airflow", password="airflow", dbname=database
        )
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(statement, list(parameters))
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def _stop_postgres(self) -> None:
        if self._pg_data is not None:
            subprocess.run(
                self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self._pg_data), "-m", "immediate", "stop"]),
                capture_output=True, timeout=60, cwd="/tmp", check=False,
            )  # fmt: skip
            self._pg_data = None

    # ------------------------------------------------------------------ REST API

    def token(self) -> str:
        if self._token is None:
            credentials = {"username": self.login[0], "password": self.login[1]} if self.login else {}
            response = self.session.post(f"{self.api_url}/auth/token", json=credentials, timeout=30)
            if response.status_code >= 400:
                response = self.session.get(f"{self.api_url}/auth/token", timeout=30)
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2{path}`` (or ``/ui...`` when ``path`` starts with ``/ui``); JSON back."""
        url = self.api_url + (path if path.startswith(("/ui", "/auth")) else f"/api/v2{path}")
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        response = self.session.request(method, url, headers=headers, timeout=60, **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(
                f"{method} {path}: HTTP {response.status_code} {response.text[:500]}", response.status_code
            )
        if not response.content:  # 204 No Content, as DELETE answers
            return None
        content_type = response.headers.get("content-type", "")
        return response.json() if "json" in content_type else response.text

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        wait_until(lambda: self.api("GET", f"/dags/{dag_id}"), timeout, f"the dag-processor to serialize {dag_id}")

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self.wait_for_dag(dag_id)
        run: dict[str, Any] = self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})}
        )
        return run

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        state: str = wait_until(finished, timeout, f"{dag_id} run {run_id} to finish", interval=1.0)
        return state

    def wait_holding_slots(self, runs: Mapping[str, str], timeout: float) -> tuple[dict[str, str], float]:
        """Wait for the runs (``{dag_id: run_id}``) to end; return their states and the worker
        slot-seconds their task instances held, sampled a few times a second: a queued or running
        one holds an executor slot, a deferred one none. (A task instance's start and end span
        its deferrals too.)"""
        slot_seconds, held, last = 0.0, 0, time.monotonic()
        states: dict[str, str] = {}
        deadline = last + timeout
        for sample in range(int(timeout / 0.2) + 1):
            if time.monotonic() > deadline:
                break
            holding = self.api(
                "GET", "/dags/~/dagRuns/~/taskInstances", params={"state": ["queued", "running"], "limit": 100}
            )
            now = time.monotonic()
            count = sum(1 for ti in holding["task_instances"] if runs.get(ti["dag_id"]) == ti["dag_run_id"])
            # Each interval is charged the mean of the counts at its two ends.
            slot_seconds += (held + count) / 2 * (now - last)
            held, last = count, now
            if count == 0 and sample % 5 == 0:
                states = {
                    dag_id: self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
                    for dag_id, run_id in runs.items()
                }
                if all(state in ("success", "failed") for state in states.values()):
                    return states, slot_seconds
            time.sleep(0.2)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for the runs {dict(runs)} to finish: {states}")

    def return_value(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """A task instance's return value (its ``return_value`` XCom), decoded."""
        entry = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"map_index": map_index, "deserialize": True},
        )
        value = entry["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (mapped ones included), across the API's pages."""
        found: list[dict[str, Any]] = []
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        # The API caps a page at [api] maximum_page_limit (100); bounded by the total it reports.
        for _page in range(1000):
            page = self.api("GET", path, params={"limit": 100, "offset": len(found), "order_by": "id"})
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found
        raise AssertionError(f"{path}: more than 1000 pages of task instances")
