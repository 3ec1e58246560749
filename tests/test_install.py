"""Installing heartwatch: the wheel works in a fresh venv, and `make serve` installs the runtime only.

The wheel is built and installed without network (`--no-build-isolation --no-index --no-deps`): the
fresh venv borrows the dependencies of the test venv through a .pth file, and gets heartwatch itself
only from the wheel, so what is checked is what `pip install .` and `pipx install .` put in place:
the `heartwatch` command, the package and its data (templates, static files).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{argv}: {r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with heartwatch installed from a wheel built from this checkout; returns its bin/."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT / "heartwatch", src / "heartwatch", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist", src)
    (wheel,) = (tmp / "dist").glob("heartwatch-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    purelib = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                   .stdout.strip())
    (purelib / "test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(*pip, "--python", venv / "bin" / "python", "install", "--quiet", "--no-deps", "--no-index", wheel)
    return venv / "bin"


def test_the_installed_command_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    r = run(installed / "heartwatch", "--version", cwd=tmp_path)
    assert r.stdout.strip() == "heartwatch, version 0.1.0"
    where = run(installed / "python", "-c", "import heartwatch; print(heartwatch.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(installed.parent)), where.stdout  # the wheel's copy, not this checkout


def test_the_installed_server_serves_its_pages_and_static_files(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    proc = subprocess.Popen([installed / "heartwatch", "serve", "--db", tmp_path / "hw.db", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "heartwatch serve did not start"
                time.sleep(0.1)
        assert page.status_code == 200 and "<html" in page.text  # templates/ came with the wheel
        css = next(p for p in page.text.split('"') if p.startswith("/static/"))
        assert httpx.get(f"http://127.0.0.1:{port}{css}", timeout=5).status_code == 200  # static/ too
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def fake_checkout(tmp: Path, *stamps: str) -> Path:
    shutil.copy(ROOT / "Makefile", tmp / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    if stamps:
        (tmp / ".venv" / "bin").mkdir(parents=True)
        (tmp / ".venv" / "bin" / "python").touch()
        later = time.time() + 10
        for stamp in stamps:
            (tmp / ".venv" / stamp).touch()
            os.utime(tmp / ".venv" / stamp, (later, later))
    return tmp


def make_n(folder: Path, target: str) -> str:
    return run("make", "-n", target, cwd=folder).stdout


def test_make_serve_installs_the_runtime_only(tmp_path: Path) -> None:
    plan = make_n(fake_checkout(tmp_path), "serve")
    assert "-m venv .venv" in plan
    assert "pip install --quiet -e .\n" in plan
    assert "[test]" not in plan


def test_make_test_adds_the_test_tools_and_neither_reinstalls_the_other(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert "pip install --quiet -e '.[test]'" in make_n(fake_checkout(fresh), "test")
    served = tmp_path / "served"
    served.mkdir()
    assert "pip install" not in make_n(fake_checkout(served, ".installed-serve"), "serve")
    tested = tmp_path / "tested"
    tested.mkdir()
    checkout = fake_checkout(tested, ".installed", ".installed-serve")  # what `make test` leaves
    assert "pip install" not in make_n(checkout, "serve")
    assert "pip install" not in make_n(checkout, "test")
