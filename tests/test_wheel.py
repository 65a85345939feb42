"""The product as IT installs it: a built wheel in a fresh venv, run in an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from this checkout, as `pip install .` does."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    (found,) = out.glob("residency_advising-*.whl")
    return found


def test_the_wheel_carries_the_templates_and_no_benchmark_or_test(wheel: Path) -> None:
    """Templates ship inside the package; benchmarks and tests stay in the repository."""
    names = zipfile.ZipFile(wheel).namelist()
    for template in sorted(p.name for p in (ROOT / "templates").iterdir()):
        assert f"flows/letters/templates/{template}" in names
    assert any(n.startswith("flows/intake/") for n in names)
    assert not [n for n in names if n.startswith(("benchmarks/", "tests/"))]
    # The documents messages name ship too (`advising docs`).
    assert {"flows/docs/README.md", "flows/docs/rules.md"} <= set(names)


def test_the_installed_wheel_runs_demo_and_run_in_an_empty_folder(
    wheel: Path, tmp_path: Path
) -> None:
    """`advising demo` then `advising run` work with nothing but the installed wheel."""
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([python, "-c", purelib], check=True, capture_output=True,
                               text=True).stdout.strip())
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    # The dependencies (Prefect, GX, ...) come from the test run's own environment, after the
    # wheel's packages on the path: the product itself is only the wheel's copy.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "office"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ADVISING_", "PREFECT_API", "PYTHON"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    advising = [str(venv / "bin" / "advising")]  # the console script pip made
    where = subprocess.run(
        [python, "-c", "import flows; print(flows.__file__)"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout
    assert where.startswith(str(site)), where
    demo = subprocess.run([*advising, "demo", "--students", "4"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    run = subprocess.run([*advising, "run"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    docs = subprocess.run([*advising, "docs", "rules"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
    assert docs.returncode == 0 and docs.stdout.startswith("# The outlook rules"), docs.stderr
    listed = subprocess.run([*advising, "docs"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=60).stdout
    assert str(site / "flows" / "docs" / "README.md") in listed, listed
    letters = list((work / "output").rglob("letters/*.html"))
    assert len(letters) == 4
    assert "</html>" in letters[0].read_text(encoding="utf-8")
