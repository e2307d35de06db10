"""What a benchmark run's figures depend on besides the code: the commit, the machine, and how busy
the machine was meanwhile (load average, the CPU time other processes took, time stolen by the
hypervisor).

``benchmarks/__main__.py`` writes all of it into ``RESULTS.md``: nothing there is written by hand.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Set for the run, so that every process it starts (even one a daemon re-parents) is told apart
# from the machine's other work.
RUN_MARK = "WHATSAPP_BENCH_RUN"
# The run's own output: rewriting it does not make the measured code differ from the commit.
OUTPUT = "benchmarks/RESULTS.md"
VERSIONS = (
    "apache-airflow",
    "apache-airflow-task-sdk",
    "apache-airflow-providers-http",
    "airflow-provider-whatsapp",
    "requests",
    "aiohttp",
    "tenacity",
)
BUSIEST = 8


def machine() -> dict[str, str]:
    """CPU model, cores, memory and the versions the figures depend on."""
    cpu = platform.processor() or "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    versions: dict[str, str] = {}
    for name in VERSIONS:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{total_kb / 1024 / 1024:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **versions,
    }


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def source(repo: Path) -> dict[str, str]:
    """The commit measured, and whether the work tree differed from it (and where)."""
    head = _git(repo, "log", "-1", "--format=%H %s")
    status = _git(repo, "status", "--porcelain", "--untracked-files=all")
    if head is None or status is None:
        return {"commit": "unknown (not a git work tree)", "tree": "unknown"}
    commit, _, subject = head.strip().partition(" ")
    changed = [line[3:] for line in status.splitlines() if line[3:] != OUTPUT]
    if not changed:
        tree = "clean (the measured code is the commit's)"
    else:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        tree = f"DIRTY: {len(changed)} path(s) differ from the commit ({shown})"
    return {"commit": f"{commit} ({subject[:100]})", "tree": tree}


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


@dataclass
class CpuTimes:
    """The whole machine's CPU time so far (``/proc/stat``), in core-seconds."""

    busy: float
    steal: float

    @classmethod
    def now(cls) -> CpuTimes:
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return cls((user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS)


def process_label(argv: list[str], comm: str) -> str:
    """A short name for a process: its program (a Python script's or module's name), and a
    subcommand when it has one (``airflow scheduler``); never a path."""
    if not argv:
        return "kernel"
    # Some programs (Chromium) rewrite their command line as one string.
    words = argv[0].split() if len(argv) == 1 else argv[:]
    if os.path.basename(words[0]).startswith("python"):
        words = words[1:]
        while words and words[0].startswith("-") and words[0] not in ("-m", "-c"):
            words = words[1:]
        if not words:
            return "python"
        if words[0] == "-c":
            return "python -c"
        if words[0] == "-m" and len(words) > 1:
            words = words[1:]
    name = os.path.basename(words[0]) or comm
    subcommand = words[1] if len(words) > 1 else ""
    if subcommand and not subcommand.startswith("-") and "/" not in subcommand and "." not in subcommand:
        return f"{name} {subcommand}"[:40]
    return name[:40]


def _rusage_seconds() -> float:
    """CPU time of this process and of every descendant it (or they) waited for."""
    both = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(usage.ru_utime + usage.ru_stime for usage in both)


@dataclass
class _Process:
    label: str
    ours: bool
    # A process of the run that no process of the run started (a daemon's re-parented child): its
    # CPU time, and that of the children it waited for, escapes the run's own accounting.
    orphan: bool
    first_cpu: float
    last_cpu: float
    first_children_cpu: float
    last_children_cpu: float

    def cpu(self, children: bool = False) -> float:
        own = self.last_cpu - self.first_cpu
        return own + (self.last_children_cpu - self.first_children_cpu if children else 0.0)


class LoadWatch:
    """Samples the machine while a run goes on: load average, and each process's CPU time, told
    apart as the run's own (this process, what it started) or another's.

    :param interval: seconds between samples; a process that lives and dies between two samples
        is not seen.
    """

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.before = self.after = (0.0, 0.0, 0.0)
        self.loads: list[float] = []
        self.seconds = 0.0
        self._processes: dict[tuple[int, int], _Process] = {}
        self._mark = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_before = self._cpu_after = CpuTimes(0.0, 0.0)
        self._rusage = 0.0
        self._started = 0.0
        self._started_ticks = 0

    def __enter__(self) -> LoadWatch:
        os.environ[RUN_MARK] = self._mark
        self.before = load_average()
        self._cpu_before = CpuTimes.now()
        self._rusage = _rusage_seconds()
        self._started = time.monotonic()
        self._started_ticks = int(float(Path("/proc/uptime").read_text().split()[0]) * CLOCK_TICKS)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="load-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._sample()
        self.after = load_average()
        self._cpu_after = CpuTimes.now()
        self._rusage = _rusage_seconds() - self._rusage
        self.seconds = time.monotonic() - self._started
        os.environ.pop(RUN_MARK, None)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        self.loads.append(load_average()[0])
        seen: dict[int, tuple[int, int]] = {}
        fresh: list[tuple[tuple[int, int], int, float, float, str]] = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                comm_end = (text := stat.read_text()).rindex(")")
                fields = text[comm_end + 2 :].split()
                pid = int(stat.parent.name)
                # After the command name: state, ppid (2nd), utime, stime, and those of the children
                # it waited for (12th to 15th), start time (20th).
                key = (pid, int(fields[19]))
                cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                children = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
                seen[pid] = key
                known = self._processes.get(key)
                if known is not None:
                    known.last_cpu, known.last_children_cpu = cpu, children
                else:
                    fresh.append((key, int(fields[1]), cpu, children, text[text.index("(") + 1 : comm_end]))
        # Parents before children: a process started by one of the run's is the run's.
        for key, ppid, cpu, children, comm in sorted(fresh, key=lambda item: item[0][1]):
            parent = self._processes.get(seen.get(ppid, (-1, -1)))
            by_parent = key[0] == os.getpid() or (parent is not None and parent.ours)
            ours = by_parent or self._marked(key[0])
            # A process started during the run counts all its CPU time; an older one, what it adds.
            new = key[1] >= self._started_ticks
            self._processes[key] = _Process(
                self._label(key[0], comm),
                ours,
                ours and not by_parent,
                0.0 if new else cpu,
                cpu,
                0.0 if new else children,
                children,
            )

    def _marked(self, pid: int) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"{RUN_MARK}={self._mark}".encode() in environ.split(b"\0")

    @staticmethod
    def _label(pid: int, comm: str) -> str:
        try:
            argv = [part.decode(errors="replace") for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
        except OSError:
            return comm
        return process_label([part for part in argv if part], comm)

    def own_cpu_seconds(self) -> float:
        """CPU core-seconds the run took: this process, what it waited for, and its orphans."""
        orphans = sum(p.cpu(children=True) for p in self._processes.values() if p.orphan)
        return self._rusage + orphans

    def busiest_others(self) -> list[tuple[str, float]]:
        """The other processes' CPU core-seconds during the run, by name, most first (from the samples)."""
        by_name: dict[str, float] = {}
        for process in self._processes.values():
            if not process.ours:
                by_name[process.label] = by_name.get(process.label, 0.0) + process.cpu()
        busiest = sorted(by_name.items(), key=lambda item: -item[1])[:BUSIEST]
        return [(name, seconds) for name, seconds in busiest if seconds >= 0.5]

    def summary(self) -> list[str]:
        """What the run's load was, as lines for RESULTS.md."""
        cores = os.cpu_count() or 1
        capacity = max(self.seconds * cores, 1e-9)
        busy = self._cpu_after.busy - self._cpu_before.busy
        steal = self._cpu_after.steal - self._cpu_before.steal
        ours = self.own_cpu_seconds()
        # Exact for the machine and for the run; the others' share is what is left.
        others = max(busy - ours, 0.0)
        before, after = (", ".join(f"{value:.2f}" for value in load) for load in (self.before, self.after))
        lines = [
            f"load average (1, 5, 15 min): {before} before the run; {after} after; the 1-min load sampled "
            f"every {self.interval:g} s during the run: median {statistics.median(self.loads):.2f}, "
            f"max {max(self.loads):.2f}",
            f"CPU over the run ({cores} cores x {self.seconds:,.0f} s): the machine was busy "
            f"{busy:,.0f} core-s ({busy / capacity:.0%}); this run's processes took {ours:,.0f} core-s "
            f"({ours / capacity:.0%}), other processes {others:,.0f} core-s ({others / capacity:.0%}); "
            f"the hypervisor stole {steal:,.0f} core-s ({steal / capacity:.0%})",
        ]
        busiest = self.busiest_others()
        lines.append(
            "other processes, busiest first (core-s, from samples: one that lived between two is not seen): "
            + (", ".join(f"{name} {seconds:,.0f}" for name, seconds in busiest) or "none")
        )
        return lines


__all__ = ["LoadWatch", "machine", "process_label", "source"]
