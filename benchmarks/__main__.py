"""Run the benchmarks, print one table and write ``benchmarks/RESULTS.md``.

``python -m benchmarks`` runs all of them (``benchmarks/run`` sets up ``.venv`` first);
``--only overhead,pacing`` runs some; ``--quick`` uses small counts, checks correctness only and
does not touch ``RESULTS.md``. When any benchmark's own correctness check failed, it exits non-zero
and leaves ``RESULTS.md`` as it was. Every line of ``RESULTS.md`` is written here: the commit and
whether the work tree differed from it, the machine, and its load during the run
(``benchmarks/provenance.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import REPO, Figure, Result
from benchmarks.provenance import LoadWatch, machine, source

BENCHMARKS = {
    "overhead": "benchmarks.bench_overhead",
    "pacing": "benchmarks.bench_pacing",
    "import": "benchmarks.bench_import",
    "triggers": "benchmarks.bench_triggers",
    "throughput": "benchmarks.bench_throughput",
    "multi_waba": "benchmarks.bench_multi_waba",
    "budget_store": "benchmarks.bench_budget_store",
    "deployment_budgets": "benchmarks.bench_deployment_budgets",
}
# Every benchmark bounds its own loops; this only stops a wedged process.
BENCHMARK_TIMEOUT = 3600
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def run_one(key: str, quick: bool, log_dir: Path) -> Result:
    log = log_dir / f"{key}.log"
    command = [sys.executable, "-m", BENCHMARKS[key], *(["--quick"] if quick else [])]
    started = time.monotonic()
    with log.open("w") as stderr:
        try:
            done = subprocess.run(
                command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=BENCHMARK_TIMEOUT
            )
            stdout, code = done.stdout, done.returncode
        except subprocess.TimeoutExpired:
            stdout, code = "", -1
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if lines:
        result = Result.from_dict(json.loads(lines[-1][len("RESULT ") :]))
    else:
        result = Result(key, correct=False, errors=[f"no result (exit code {code}); see {log}"])
    if code != 0 and result.correct:
        result.correct = False
        result.errors.append(f"exit code {code}; see {log}")
    result.seconds = time.monotonic() - started
    return result


def _value(figure: Figure) -> str:
    if figure.unit in ("calls", "numbers", "connections", "polls", "tasks"):
        return f"{figure.value:,.0f} {figure.unit}"
    if figure.unit == "s":
        return f"{figure.value:.3f} s"
    return f"{figure.value:,.1f} {figure.unit}"


def _met(figure: Figure) -> str:
    if figure.met is None:
        return ""
    return "met" if figure.met else "NOT met"


def table(results: list[Result]) -> list[str]:
    rows = [
        "| benchmark | figure | value | baseline | ratio | target | |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    for result in results:
        for figure in result.figures:
            ratio = "" if figure.ratio is None else f"{figure.ratio:.3f}x"
            rows.append(
                f"| {result.benchmark} | {figure.name} | {_value(figure)} | {figure.baseline} | {ratio} "
                f"| {figure.target} | {_met(figure)} |"
            )
    return rows


def report(results: list[Result], quick: bool, started: datetime, watch: LoadWatch, code: dict[str, str]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `benchmarks/run{' --quick' if quick else ''}` (`python -m benchmarks`), every line of it: "
        "all benchmarks in one run. What each measures, its baseline and its target: [README.md](README.md).",
        "",
        "## Run",
        "",
        f"- commit: {code['commit']}",
        f"- work tree: {code['tree']}",
        f"- started {started:%Y-%m-%d %H:%M} UTC, took {watch.seconds / 60:.1f} min",
        *(f"- {line}" for line in watch.summary()),
        "",
        "## Machine",
        "",
        *(f"- {name}: {value}" for name, value in machine().items()),
        "",
        "## Figures",
        "",
        "Every ratio is to the baseline named beside it, measured in the same run.",
        "",
        *table(results),
        "",
        "## Notes",
        "",
    ]
    for result in results:
        state = "correct" if result.correct else "FAILED its correctness check"
        lines.append(f"- **{result.benchmark}** ({result.seconds:.0f} s, {state}):")
        lines += [f"  - {note}" for note in result.notes]
        lines += [f"  - error: {error}" for error in result.errors]
        unmet = [figure.name for figure in result.figures if figure.met is False]
        if unmet:
            # No excuse is written here: what the benchmark measured about its own spread is in
            # its notes above.
            lines.append(f"  - target not met: {', '.join(unmet)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: correctness only")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/RESULTS.md")
    args = parser.parse_args()
    keys = [key.strip() for key in args.only.split(",") if key.strip()] or list(BENCHMARKS)
    unknown = [key for key in keys if key not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    # Read before the run: what is measured is the code as it was when the run began.
    code = source(REPO)
    started = datetime.now(UTC)
    log_dir = Path(tempfile.mkdtemp(prefix="whatsapp-bench-logs-"))
    results = []
    with LoadWatch() as watch:
        for key in keys:
            print(f"running {key} ...", flush=True)
            result = run_one(key, args.quick, log_dir)
            results.append(result)
            print(f"  {'ok' if result.correct else 'FAILED'} in {result.seconds:.0f} s", flush=True)
            for error in result.errors:
                print(f"  error: {error}", flush=True)
    text = report(results, args.quick, started, watch, code)
    print()
    print("\n".join(table(results)))
    print(f"\ncommit {code['commit']}; work tree {code['tree']}")
    print("\n".join(watch.summary()))
    print(f"\nlogs: {log_dir}")
    failed = [result.benchmark for result in results if not result.correct]
    # Only a full run of every benchmark, each passing its own correctness check, may replace the
    # committed figures.
    if failed:
        print(f"{RESULTS.relative_to(REPO)} not written: {', '.join(failed)} failed its correctness check")
    elif not args.quick and not args.no_write and keys == list(BENCHMARKS):
        RESULTS.write_text(text)
        print(f"wrote {RESULTS.relative_to(REPO)}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
