"""Benchmark (not a test) for issue #18: offices on a work pool against one process.

    python -m benchmarks.consortium --offices 3 --students 5000

The same work twice, each from fresh copies of the rosters (demo generator, one seed per
office, outbox delivery):
- one process: `advising run --offices FILE` (its temporary Prefect server included), timed
  from start to exit;
- a work pool: a real `prefect server start`, `advising deploy`, two `prefect worker start
  --limit 1`, then one run per office started at once and timed until the last one is
  Completed. The server and the workers are started (and ready) before the clock starts: they
  are long-lived in a consortium. Workers poll every second (PREFECT_WORKER_QUERY_SECONDS=1;
  Prefect's default of 15 s would add up to 15 s of waiting to each run).

Peak memory is sampled as the summed RSS of a process tree: the one process with its server
and render process; each worker with its flow-run process and render process. Every process
started here is killed at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.benchmark import TreeSampler, run_process, wait_idle
from flows.intake.demo import write_demo_roster
from tests.support.prefect_api import Api, free_port

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADVISING_", "PREFECT_"))}
    env.update(PYTHONPATH=str(ROOT), PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)
    return env


def _offices(root: Path, offices: int, students: int) -> Path:
    """Write each office's roster and the offices file; return the file."""
    blocks = []
    for k in range(1, offices + 1):
        name = f"school-{k}"
        write_demo_roster(root / name / "input" / "class-2027.xlsx", students, seed=k)
        (root / name / "output").mkdir(exist_ok=True)
        blocks.append(
            f'[[office]]\nname = "{name}"\ninput_dir = "{name}/input"\n'
            f'output_dir = "{name}/output"\nschedule_cron = "0 3 1 1 *"\n'
            f"today = 2026-11-24\nquiet_seconds = 0\n"
        )
    path = root / "offices.toml"
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def one_process(root: Path, offices: int, students: int) -> tuple[float, int]:
    """Run `advising run --offices` once; return wall seconds and the tree's peak RSS."""
    path = _offices(root, offices, students)
    wait_idle(30)
    proc = run_process([sys.executable, "-m", "flows.cli", "run", "--offices", str(path)],
                       root, _env(PREFECT_HOME=str(root / ".prefect")), root / "run.log")
    if proc.returncode != 0:
        raise SystemExit(f"advising run --offices failed ({proc.returncode}):\n{proc.tail()}")
    done = proc.log.read_text().count(": processed")
    if done != offices:
        raise SystemExit(f"only {done} of {offices} offices processed:\n{proc.tail()}")
    return proc.wall, proc.tree_peak


def work_pool(root: Path, offices: int, students: int) -> tuple[float, list[int]]:
    """Run one deployment per office on two workers; return wall seconds and each worker's peak."""
    path = _offices(root, offices, students)
    port = free_port()
    api = Api(f"http://127.0.0.1:{port}/api")
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (root / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append(proc)
        return proc

    try:
        start("server", [sys.executable, "-m", "prefect", "server", "start", "--host",
                         "127.0.0.1", "--port", str(port)],
              _env(PREFECT_HOME=str(root / "server-home"), PREFECT_UI_ENABLED="0"))
        deadline = time.monotonic() + 300
        while not api.healthy():
            if time.monotonic() > deadline:
                raise SystemExit("the Prefect server did not start")
            time.sleep(0.5)
        env = _env(PREFECT_API_URL=api.url, PREFECT_HOME=str(root / "worker-home"),
                   PREFECT_WORKER_QUERY_SECONDS="1")
        subprocess.run([sys.executable, "-m", "flows.cli", "deploy", "--work-pool", "bench",
                        "--offices", str(path)], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        workers = [
            start(f"worker-{k}", [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                                  "bench", "--limit", "1", "--name", f"worker-{k}"], env)
            for k in (1, 2)
        ]
        time.sleep(15)  # both workers started and polling before the clock starts
        wait_idle(30)
        samplers = [TreeSampler(w.pid) for w in workers]
        start_time = time.perf_counter()
        runs = [api.start_run(f"school-{k}") for k in range(1, offices + 1)]
        pending = set(runs)
        while pending:
            for run_id in list(pending):
                state = api.state(run_id)
                if state == "COMPLETED":
                    pending.discard(run_id)
                elif state in ("FAILED", "CRASHED", "CANCELLED"):
                    raise SystemExit(f"run {run_id} ended {state}; see {root}/worker-*.log")
            time.sleep(0.25)
        wall = time.perf_counter() - start_time
        return wall, [s.stop() for s in samplers]
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    """Measure both ways and print wall time and peak memory of each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offices", type=int, default=3)
    parser.add_argument("--students", type=int, default=5000, help="per office")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="advising-consortium-"))
    try:
        (work / "one").mkdir()
        (work / "pool").mkdir()
        wall1, peak1 = one_process(work / "one", args.offices, args.students)
        wall2, peaks = work_pool(work / "pool", args.offices, args.students)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    total = args.offices * args.students
    print(f"{args.offices} offices x {args.students:,} students ({total:,}), outbox delivery, "
          f"{os.cpu_count()} CPUs")
    print(f"  one process (advising run --offices): {wall1:6.1f} s wall, "
          f"peak {peak1 / MiB:,.0f} MiB (process, its server and render process)")
    print(f"  work pool, 2 workers --limit 1:        {wall2:6.1f} s wall, "
          f"peak {' + '.join(f'{p / MiB:,.0f}' for p in peaks)} MiB (each worker with its "
          "flow-run and render processes; the Prefect server not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
