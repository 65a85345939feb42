"""Shared fixtures: isolated settings, folders and one Prefect test harness for the session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from flows.runtime import apply_prefect_defaults
from flows.settings import Settings
from residency_rules.specialties import SpecialtyTable, load_default_table

# Same defaults the CLI sets, before anything imports Prefect.
apply_prefect_defaults()

# A fixed "today" so letters and timing rules do not drift with the calendar.
RUN_DATE = date(2026, 11, 24)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true",
        help="also run the slow tests (real Prefect servers, workers, whole flow runs, the "
        "built wheel, LibreOffice): what CI runs. Without it they are deselected.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the slow tests out of a plain `pytest` (a few minutes), in with --slow."""
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


@pytest.fixture(scope="session")
def table() -> SpecialtyTable:
    """The specialty table shipped with the product."""
    return load_default_table()


@pytest.fixture
def settings(workdir: Path) -> Settings:
    """Settings from a clean environment, school.edu the only allowed domain."""
    return Settings(allowed_email_domains=("school.edu",), today=RUN_DATE)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run flows against one temporary Prefect server shared by the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


_MADE_HOME: list[tuple[Path, subprocess.Popen[bytes]]] = []  # started at the session's start


def _make_prefect_home(home: Path) -> subprocess.Popen[bytes]:
    """Start a temporary Prefect server in `home` once, so that it creates its database."""
    code = ("from pathlib import Path\n"
            "from flows.runtime import TemporaryServer, apply_prefect_defaults\n"
            "apply_prefect_defaults()\n"
            f"server = TemporaryServer(Path({str(home)!r}))\n"
            "server.wait_ready(timeout=120)\n"
            "server.stop()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def _start_making() -> None:
    home = Path(tempfile.mkdtemp(prefix="advising-made-prefect-")) / "prefect"
    _MADE_HOME.append((home, _make_prefect_home(home)))


def pytest_sessionstart(session: pytest.Session) -> None:
    """With --slow, start making the database on the other core while the first tests run."""
    if session.config.getoption("--slow"):
        _start_making()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the maker if no test waited for it, and remove what it made."""
    for home, maker in _MADE_HOME:
        if maker.poll() is None:
            maker.terminate()
        maker.wait(timeout=30)
        shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def made_prefect_home() -> Path:
    """A temporary Prefect server's home, its database created once for the session.

    The first `advising run` in a new results folder creates the database (about 10 s);
    every later night finds it made. Slow tests about a run, not about that first night,
    start from a copy (warm_prefect): the wheel's test and the two runs started together
    keep creating their own. Started at the session's start with --slow, else here.
    """
    if not _MADE_HOME:
        _start_making()
    home, maker = _MADE_HOME[0]
    assert maker.wait(timeout=180) == 0, "the temporary Prefect server did not start"
    (home / "server.log").unlink(missing_ok=True)
    assert (home / "prefect.db").is_file()
    return home


def place_made_home(made: Path, output_dir: Path) -> Path:
    """Copy a made database where `advising run` with this results folder keeps its
    temporary server's (flows.run.temporary_home)."""
    from flows.run import temporary_home

    target = temporary_home(output_dir)
    shutil.copytree(made, target)
    target.chmod(0o700)
    return target


@pytest.fixture
def warm_prefect(workdir: Path, made_prefect_home: Path) -> Path:
    """Put a made database where `advising run` in workdir keeps its temporary server's."""
    return place_made_home(made_prefect_home, workdir / "output")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give each test its own input/ and output/ folders and settings from the environment."""
    (tmp_path / "input").mkdir()
    (tmp_path / "output").mkdir()
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("ADVISING_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ADVISING_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("ADVISING_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("ADVISING_TODAY", RUN_DATE.isoformat())
    monkeypatch.setenv("ADVISING_QUIET_SECONDS", "0")
    # The delivery tests are about delivery: no approval step (its own tests, test_approval.py,
    # take this away to use the default: "first" with smtp).
    monkeypatch.setenv("ADVISING_APPROVAL", "off")
    return tmp_path
