"""A distributed Airflow 3.3 deployment on 127.0.0.1: CeleryExecutor on Redis, several workers and triggerers.

``CeleryAirflowDeployment`` is :class:`~devtools.airflow_deployment.AirflowDeployment` (PostgreSQL,
api-server, scheduler, dag-processor) with Redis (Debian's ``redis-server``, started here, its
queue kept in an append-only file as a production broker keeps it), ``workers`` Celery workers and
``triggerers`` triggerers, each a process in a session of its own with its own log and its own
host name (``worker-1``, ``triggerer-2``...: the name Airflow records on the task instances and
jobs they run). ``kill(component)`` SIGKILLs a component with everything it started, as a host
dies; ``redis.restart()`` restarts the broker. The settings that bound recovery (task heartbeat
timeout, triggerer health threshold) are short, and a cluster policy caps every task's retry delay
at ``max_retry_delay``, so a fault's recovery is seconds, not the minutes a production DAG waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from devtools.airflow_deployment import REPO, AirflowDeployment, free_port, kill_session, wait_until

REDIS_SERVER = "/usr/bin/redis-server"
# Airflow asks this for the name of the host a task or triggerer job runs on (``hostname_callable``).
HOSTNAME_ENV = "WHATSAPP_E2E_HOSTNAME"

# Run by every component at start (``$AIRFLOW_HOME/config`` is on its path): the platform's policy.
CLUSTER_POLICY = '''\
"""Cluster policy of the distributed test deployment: recovery from a fault within seconds."""

from datetime import timedelta

MAX_RETRY_DELAY = timedelta(seconds={seconds})


def task_policy(task):
    if task.retry_delay > MAX_RETRY_DELAY:
        task.retry_delay = MAX_RETRY_DELAY
'''


def component_hostname() -> str:
    """The host name of this component: distinct per worker and triggerer on one machine."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def can_run() -> str | None:
    """Why the distributed deployment cannot run here, or ``None`` when it can."""
    if not Path(REDIS_SERVER).exists():
        return f"{REDIS_SERVER} not installed (Debian's redis-server package)"
    if not any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        return "PostgreSQL not installed (Debian's postgresql package): Celery's result backend needs it"
    return None


class RedisServer:
    """Debian's ``redis-server`` on 127.0.0.1, as the Celery broker; every wait bounded.

    :param folder: where its append-only file and log go.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.folder / "redis.log"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # The queue lives in the append-only file, synced on every write: a restarted broker still
        # holds the tasks the scheduler sent before it went down.
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder),
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_until(self.ping, 60, f"Redis on port {self.port}", interval=0.2)

    def ping(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"redis-server is not running; see {self.log_path}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # Redis flushes its append-only file on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        kill_session(process.pid)
        process.wait(timeout=10)

    def restart(self) -> None:
        """Stop the broker and start it again on the same port."""
        self.stop()
        self.start()
        self.restarts += 1


class CeleryAirflowDeployment(AirflowDeployment):
    """Airflow on PostgreSQL with the CeleryExecutor on Redis: api-server, scheduler, dag-processor,
    ``workers`` Celery workers and ``triggerers`` triggerers.

    :param env: extra environment for every component (connections, variables, settings).
    :param dags_folder: the DAGs to serve; default this repository's ``dags/``.
    :param workers: how many Celery workers (``worker-1``...).
    :param triggerers: how many triggerers (``triggerer-1``...).
    :param worker_concurrency: task slots of each worker.
    :param max_retry_delay: the cluster policy's cap on every task's retry delay.
    """

    executor = "CeleryExecutor"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        dags_folder: Path | None = None,
        workers: int = 2,
        triggerers: int = 2,
        worker_concurrency: int = 4,
        max_retry_delay: timedelta = timedelta(seconds=10),
    ) -> None:
        super().__init__(env=env, dags_folder=dags_folder)
        self.workers = [f"worker-{n}" for n in range(1, workers + 1)]
        self.triggerers = [f"triggerer-{n}" for n in range(1, triggerers + 1)]
        self.worker_concurrency = worker_concurrency
        self.max_retry_delay = max_retry_delay
        self.redis = RedisServer(self.home / "redis")
        self.services = ["postgres", "redis/redis"]
        self.killed: list[str] = []

    def component_commands(self) -> dict[str, list[str]]:
        commands = {name: args for name, args in super().component_commands().items() if name != "triggerer"}
        for name in self.triggerers:
            commands[name] = ["triggerer"]
        for name in self.workers:
            commands[name] = [
                "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(self.worker_concurrency),
            ]  # fmt: skip
        return commands

    def component_environment(self, component: str) -> dict[str, str]:
        env = self.environment()
        if component in (*self.workers, *self.triggerers):
            env[HOSTNAME_ENV] = component
        return env

    def environment(self) -> dict[str, str]:
        env = super().environment()
        settings = {
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
            # Celery's SQLAlchemy backend must be told the driver: a bare postgresql:// means psycopg 3.
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            # Runs of the onboarding DAG wait deferred, holding no slot: more than 16 (the default)
            # may be active at once.
            "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
            # Longer than the test: a killed worker's unacknowledged task is not handed out again by
            # Redis; the scheduler's heartbeat timeout fails it and Airflow's retry runs it.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.component_hostname",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        }
        for name, value in settings.items():
            env.setdefault(name, value)
        return env

    def start(self) -> None:
        config = self.home / "config"
        config.mkdir(exist_ok=True)
        seconds = int(self.max_retry_delay.total_seconds())
        (config / "airflow_local_settings.py").write_text(CLUSTER_POLICY.format(seconds=seconds))
        self.redis.start()
        super().start()
        if self.database != "postgresql":
            raise RuntimeError("the CeleryExecutor deployment needs PostgreSQL for Celery's result backend")
        for worker in self.workers:
            self.wait_for_log(worker, rf"{worker}@\S+ ready", 180)
        wait_until(lambda: len(self.alive_triggerers()) == len(self.triggerers), 120, "every triggerer's heartbeat")

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.redis.stop()

    def alive_triggerers(self) -> dict[int, str]:
        """Job ID to host name of the triggerers the API sees alive."""
        jobs = self.api("GET", "/jobs", params={"job_type": "TriggererJob", "is_alive": True, "limit": 100})["jobs"]
        return {int(job["id"]): str(job["hostname"]) for job in jobs}

    def stop_component(self, component: str, timeout: float = 120) -> None:
        """Stop ``component`` as an orchestrator does (SIGTERM, then SIGKILL past ``timeout``)."""
        process = self.processes[component]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
        kill_session(process.pid)
        process.wait(timeout=30)

    def kill(self, component: str) -> None:
        """SIGKILL ``component`` and every process it started (its tasks, its trigger runner)."""
        process = self.processes[component]
        kill_session(process.pid)
        process.wait(timeout=30)
        self.killed.append(component)

    def where_to_look(self) -> str:
        return f"{super().where_to_look()}; cluster policy {self.home / 'config' / 'airflow_local_settings.py'}"

    def describe(self) -> dict[str, Any]:
        """What runs where, for the test's report."""
        return {
            "executor": self.executor,
            "workers": self.workers,
            "triggerers": self.triggerers,
            "redis": self.redis.url,
            "max_retry_delay": str(self.max_retry_delay),
        }


def write_secrets(folder: Path, connections: Mapping[str, Any], variables: Mapping[str, str]) -> dict[str, str]:
    """Connections and Variables in files for Airflow's local-filesystem secrets backend, readable
    by their owner only; the environment that points every component at them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"connections_file_path": folder / "connections.json", "variables_file_path": folder / "variables.json"}
    for key, content in (("connections_file_path", connections), ("variables_file_path", variables)):
        paths[key].write_text(json.dumps(content))
        paths[key].chmod(0o600)
    return {
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({key: str(path) for key, path in paths.items()}),
    }


__all__ = ["CeleryAirflowDeployment", "RedisServer", "can_run", "component_hostname", "write_secrets"]
