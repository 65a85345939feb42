"""A PostgreSQL server for the work-pool test and benchmark: the one CI started, or a throwaway one.

A consortium's Prefect server keeps its database in PostgreSQL (README, "A consortium"), so the
work-pool test and the consortium benchmark run theirs on one too:

- `ADVISING_TEST_POSTGRES_URL` (libpq form, `postgresql://USER[:PASSWORD]@HOST:PORT/DB`; the
  role may create databases) names a server someone started, as `.ci/run` does;
- otherwise `throwaway_cluster` makes one here with the machine's PostgreSQL binaries (`initdb`,
  `pg_ctl`: on the PATH, or where Debian's `postgresql` package puts them,
  /usr/lib/postgresql/N/bin), in a temporary folder, listening on 127.0.0.1 and a free port
  only, and removes it afterwards. PostgreSQL refuses to run as root: as root it runs as the
  `postgres` user (`runuser`).

Each user of a server gets a database of its own (`fresh_database`), dropped at the end, so a
second run never sees the first one's deployments and flow runs.

Nothing but the standard library at import (asyncpg only inside the functions that talk to the
server): `.ci/run` calls `python3 -m tests.support.postgres start DIR` before any venv exists.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

URL_VARIABLE = "ADVISING_TEST_POSTGRES_URL"
SUPERUSER = "postgres"  # the cluster's superuser role, whoever runs it
# A throwaway cluster's data outlives nothing: no fsync, as PostgreSQL's docs suggest for tests.
FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class Unavailable(Exception):
    """No PostgreSQL server can be had here; the message says why (a skip reason)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> Path | None:
    """Return a PostgreSQL program: on the PATH, or the newest of /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    return versions[-1] if versions else None


@dataclass(frozen=True)
class Cluster:
    """A PostgreSQL cluster in root/data, listening on 127.0.0.1:port (and a socket in root)."""

    root: Path
    port: int
    settings: tuple[str, ...]  # the `-c` settings it was started with
    cpus: tuple[int, ...] | None  # the CPUs it is pinned to (taskset), None: any

    @property
    def url(self) -> str:
        """libpq URL of its `postgres` database as the superuser (trust on loopback)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @property
    def postmaster_pid(self) -> int | None:
        """The server's main process (every backend is its child), from postmaster.pid."""
        try:
            return int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def _as_owner(cmd: list[str]) -> list[str]:
    """The command, run as the `postgres` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *cmd]
    su = shutil.which("su")
    if su is None:
        raise Unavailable("running as root and neither runuser nor su is installed to run "
                          "PostgreSQL as the postgres user")
    return [su, "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


def start_cluster(root: Path, *, cpus: Sequence[int] | None = None,
                  durable: bool = False) -> Cluster:
    """Create and start a cluster in the empty folder root; raise Unavailable if it cannot.

    durable=False turns fsync off (a test's data is thrown away); durable=True keeps
    PostgreSQL's defaults, as a real server runs (the benchmark). cpus pins the server and
    every backend it forks to those CPUs (`taskset -c`).
    """
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise Unavailable("PostgreSQL is not installed (no initdb/pg_ctl on the PATH or in "
                          "/usr/lib/postgresql/*/bin): `apt-get install postgresql`, or set "
                          f"{URL_VARIABLE} to a server whose role may create databases")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no postgres user to run "
                              "PostgreSQL as (PostgreSQL refuses to run as root)") from None
        os.chown(root, owner.pw_uid, owner.pw_gid)
    root.chmod(0o700)
    port = _free_port()
    settings = (f"port={port}", "listen_addresses=127.0.0.1",
                f"unix_socket_directories={root}", *(() if durable else FAST))
    data = root / "data"
    done = subprocess.run(
        _as_owner([str(initdb), "--no-sync", "-D", str(data), "-U", SUPERUSER, "-A", "trust",
                   "-E", "UTF8", "--locale=C"]),
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise Unavailable(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
    options = " ".join(f"-c {s}" for s in settings)
    taskset = shutil.which("taskset")
    pin = ([taskset, "-c", ",".join(map(str, cpus))] if cpus is not None and taskset else [])
    done = subprocess.run(
        [*pin, *_as_owner([str(pg_ctl), "-D", str(data), "-l", str(root / "postgres.log"),
                           "-w", "-t", "120", "-o", options, "start"])],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        log = (root / "postgres.log").read_text(errors="replace")[-2000:] \
            if (root / "postgres.log").exists() else ""
        raise Unavailable(f"pg_ctl start failed: {done.stderr.strip()}\n{log}")
    return Cluster(root, port, settings, tuple(cpus) if cpus is not None and taskset else None)


def stop_cluster(root: Path) -> None:
    """Stop the cluster in root (immediately: its data is thrown away) and remove the folder."""
    pg_ctl = find_binary("pg_ctl")
    if pg_ctl is not None and (root / "data" / "postmaster.pid").exists():
        subprocess.run(_as_owner([str(pg_ctl), "-D", str(root / "data"), "-m", "immediate",
                                  "-w", "stop"]),
                       capture_output=True, check=False, stdin=subprocess.DEVNULL)
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def throwaway_cluster(*, cpus: Sequence[int] | None = None,
                      durable: bool = False) -> Iterator[Cluster]:
    """A cluster in a new folder under the system's temporary folder, removed at the end.

    Not under pytest's tmp_path: its parents are private to root, and the postgres user must
    reach the folder.
    """
    root = Path(tempfile.mkdtemp(prefix="advising-postgres-"))
    try:
        yield start_cluster(root, cpus=cpus, durable=durable)
    finally:
        stop_cluster(root)


def _libpq(url: str) -> str:
    """postgresql+asyncpg://... -> postgresql://... (what asyncpg and libpq read)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url


def with_database(url: str, name: str, driver: str = "postgresql") -> str:
    """The same server and role, another database: the URL's path replaced."""
    parts = urlsplit(_libpq(url))
    return urlunsplit((driver, parts.netloc, "/" + name, parts.query, ""))


def redact(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _execute(url: str, *statements: str) -> list[object]:
    """Run statements on the server at url; return the first column of the last one's rows."""
    import asyncpg  # Prefect's server needs it, so the venv has it

    async def run() -> list[object]:
        conn = await asyncpg.connect(_libpq(url), timeout=30)
        try:
            rows: list[object] = []
            for statement in statements:
                rows = [r[0] for r in await conn.fetch(statement)]
            return rows
        finally:
            await conn.close()

    return asyncio.run(run())


def query(url: str, statement: str) -> list[object]:
    """The first column of a query's rows (a test reads what Prefect's server stored)."""
    return _execute(url, statement)


def server_version(url: str) -> str:
    """The server's version line, e.g. "PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on ..."."""
    return str(_execute(url, "SELECT version()")[0])


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """Create a new empty database on the server at url; yield its postgresql+asyncpg URL.

    Dropped at the end (WITH (FORCE): a killed Prefect server may leave connections behind).
    """
    name = f"advising_{uuid.uuid4().hex[:12]}"
    try:
        _execute(url, f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 - any failure to connect or create is a reason
        raise Unavailable(f"cannot create a database on {redact(url)}: "
                          f"{type(exc).__name__}: {exc}") from exc
    try:
        yield with_database(url, name, driver="postgresql+asyncpg")
    finally:
        _execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_server(*, cpus: Sequence[int] | None = None,
                    durable: bool = False) -> Iterator[tuple[str, Cluster | None]]:
    """Yield (libpq URL, the cluster started here or None): ADVISING_TEST_POSTGRES_URL's
    server if it is set, else a throwaway cluster. Raise Unavailable if neither can be had.
    """
    given = os.environ.get(URL_VARIABLE, "").strip()
    if given:
        yield _libpq(given), None
        return
    with throwaway_cluster(cpus=cpus, durable=durable) as cluster:
        yield cluster.url, cluster


def main(argv: Sequence[str] | None = None) -> int:
    """`start DIR` (print the URL) and `stop DIR`: the throwaway cluster `.ci/run` starts."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("root", type=Path, help="an empty folder for the cluster")
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop_cluster(args.root)
        return 0
    try:
        print(start_cluster(args.root).url)
    except Unavailable as exc:
        print(f"PostgreSQL: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
