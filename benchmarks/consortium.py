"""Benchmark (not a test) for issues #18 and #28: offices on a work pool against one process,
and one worker against two.

    python -m benchmarks.consortium --offices 2 --students 10000

The same work three times, each from fresh copies of the rosters (demo generator, one seed per
office, outbox delivery):
- one process: `advising run --offices FILE` (its temporary Prefect server included), timed
  from start to exit: the baseline;
- a work pool with one worker pinned to CPU 0, then with two workers pinned to CPUs 0 and 1
  (`sched_setaffinity`, inherited by each worker's flow-run and render processes): a real
  `prefect server start` on PostgreSQL (a fresh database for each; `ADVISING_TEST_POSTGRES_URL`
  or a throwaway cluster of the machine's PostgreSQL, durable settings), `advising deploy`,
  the workers (`prefect worker start --limit 1`), then one run per office started at once
  and timed until the last one is Completed. The server and the workers are started (and
  ready) before the clock starts: they are long-lived in a consortium. Workers poll every
  second (PREFECT_WORKER_QUERY_SECONDS=1; Prefect's default of 15 s would add up to 15 s of
  waiting to each run). The Prefect server and PostgreSQL are not pinned: on a 2-core machine
  they share the workers' cores.

It prints `speed-up, 2 workers vs 1: N.NNx` (one worker's wall over two workers'), the peak
memory of each worker (summed RSS of the worker, its flow-run and render processes), the
database the server ran on, and whether any process printed "database is locked". Every
process started here is killed at the end.
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
from typing import Any

from benchmarks.benchmark import TreeSampler, _busy_seconds, run_process, wait_idle
from flows.intake.demo import write_demo_roster
from tests.support import postgres
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


def _pinned(cpu: int | None) -> Any:
    """A preexec_fn that pins the child (and all it starts) to one CPU; None: no pinning."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _cpu_seconds(pid: int) -> float:
    """CPU seconds a process and its reaped children have used (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def work_pool(root: Path, offices: int, students: int, database: str,
              cpus: list[int]) -> tuple[float, list[int], int, float, float]:
    """Run one deployment per office on one worker per CPU in cpus, the server on database;
    return wall seconds, each worker's peak RSS, the "database is locked" lines seen, and the
    CPU seconds the machine and the Prefect server used meanwhile."""
    path = _offices(root, offices, students)
    port = free_port()
    api = Api(f"http://127.0.0.1:{port}/api")
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, cmd: list[str], env: dict[str, str],
              cpu: int | None = None) -> subprocess.Popen[bytes]:
        log = (root / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_pinned(cpu))
        procs.append(proc)
        return proc

    try:
        start("server", [sys.executable, "-m", "prefect", "server", "start", "--host",
                         "127.0.0.1", "--port", str(port)],
              _env(PREFECT_HOME=str(root / "server-home"), PREFECT_UI_ENABLED="0",
                   PREFECT_API_DATABASE_CONNECTION_URL=database))
        deadline = time.monotonic() + 300
        while not api.healthy():
            if time.monotonic() > deadline:
                raise SystemExit(f"the Prefect server did not start; see {root}/server.log")
            time.sleep(0.5)
        env = _env(PREFECT_API_URL=api.url, PREFECT_HOME=str(root / "worker-home"),
                   PREFECT_WORKER_QUERY_SECONDS="1")
        subprocess.run([sys.executable, "-m", "flows.cli", "deploy", "--work-pool", "bench",
                        "--offices", str(path)], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        workers = [
            start(f"worker-{k}", [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                                  "bench", "--limit", "1", "--name", f"worker-{k}"], env, cpu)
            for k, cpu in enumerate(cpus, 1)
        ]
        time.sleep(15)  # the workers started and polling before the clock starts
        wait_idle(30)
        samplers = [TreeSampler(w.pid) for w in workers]
        server_cpu, busy = _cpu_seconds(procs[0].pid), _busy_seconds()
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
        server_cpu, busy = _cpu_seconds(procs[0].pid) - server_cpu, _busy_seconds() - busy
        peaks = [s.stop() for s in samplers]
        locked = sum(p.read_text(errors="replace").count("database is locked")
                     for p in root.glob("*.log"))
        return wall, peaks, locked, busy, server_cpu
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    """Measure the three ways and print wall time and peak memory of each, and the speed-up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offices", type=int, default=2)
    parser.add_argument("--students", type=int, default=10000, help="per office")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        raise SystemExit("two workers on two CPUs need a machine with two CPUs or more")
    work = Path(tempfile.mkdtemp(prefix="advising-consortium-"))
    pools: dict[int, tuple[float, list[int], int, float, float]] = {}
    try:
        for name in ("one", "pool-1", "pool-2"):
            (work / name).mkdir()
        wall1, peak1 = one_process(work / "one", args.offices, args.students)
        with postgres.postgres_server(durable=True) as (url, _cluster):
            version = postgres.server_version(url).split(" on ")[0]
            for n in (1, 2):
                with postgres.fresh_database(url) as database:
                    pools[n] = work_pool(work / f"pool-{n}", args.offices, args.students,
                                         database, cpus[:n])
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    total = args.offices * args.students
    print(f"{args.offices} offices x {args.students:,} students ({total:,}), outbox delivery, "
          f"{os.cpu_count()} CPUs; the pool's Prefect server on {version}")
    print(f"  one process (advising run --offices): {wall1:6.1f} s wall, "
          f"peak {peak1 / MiB:,.0f} MiB (process, its server and render process)")
    for n, (wall, peaks, locked, busy, server_cpu) in pools.items():
        where = "CPU 0" if n == 1 else f"CPUs 0-{n - 1}, one each"
        print(f"  work pool, {n} worker{'s' if n > 1 else ''} --limit 1 ({where}): "
              f"{wall:6.1f} s wall, peak per worker "
              f"{' + '.join(f'{p / MiB:,.0f}' for p in peaks)} MiB (with its flow-run and "
              f"render processes; server not counted); 'database is locked': {locked}")
        print(f"    CPU meanwhile: {busy:.1f} s on the machine ({len(cpus)} CPUs x {wall:.1f} s "
              f"= {len(cpus) * wall:.1f} s available), of which the Prefect server "
              f"{server_cpu:.1f} s (PostgreSQL and the rest of the machine in the remainder)")
    print(f"  speed-up, 2 workers vs 1: {pools[1][0] / pools[2][0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
