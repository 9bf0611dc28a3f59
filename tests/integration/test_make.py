"""The README's two commands on a machine that lacks something: `make` names
what to install in one line, and installs the OIDC test's npm packages itself.

Each case runs the real Makefile with a PATH holding only what that case
allows; fake `node`/`npm`/`python3` scripts stand in for the versions a
machine might have."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")


def _make(*args: str, path: Path) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(ROOT), *args],
        env={"PATH": str(path), "HOME": os.environ.get("HOME", "/root")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _bin(tmp_path: Path, *real: str, **fake: str) -> Path:
    """A PATH directory: links to the real ``real`` tools, scripts for ``fake``."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in real:
        found = shutil.which(name)
        assert found, name
        (directory / name).symlink_to(found)
    for name, script in fake.items():
        (directory / name).write_text(f"#!/bin/sh\n{script}\n")
        (directory / name).chmod(0o755)
    return directory


def _oidc(tmp_path: Path) -> Path:
    """A copy of tests/oidc without node_modules, as in a fresh clone."""
    copy = tmp_path / "oidc"
    copy.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / "tests" / "oidc" / name, copy / name)
    return copy


def _one_line(done: subprocess.CompletedProcess[str], start: str) -> None:
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if not line.startswith("make")]
    assert lines == [], done.stderr  # nothing but make's own line and ours
    ours = [line for line in done.stderr.splitlines() if line.startswith(start)]
    assert len(ours) == 1, done.stderr


@pytest.mark.parametrize(
    ("node", "found"),
    [(None, "no node"), ("echo v18.19.0", "v18.19.0"), ("echo v20.18.1", "v20.18.1")],
)
def test_without_node_20_19_make_test_says_what_to_install(tmp_path, node, found):
    oidc = _oidc(tmp_path)
    fake = {"npm": "exit 0"} | (
        {"node": f'[ "$1" = --version ] && {node} || exit 1'} if node else {}
    )
    done = _make(
        f"OIDC={oidc}", f"{oidc}/node_modules/.package-lock.json", path=_bin(tmp_path, **fake)
    )
    _one_line(done, "make test: the OIDC provider test needs Node.js >= 20.19 with npm ")
    assert f"(found: {found})" in done.stderr
    assert not (oidc / "node_modules").exists()


def test_with_node_make_test_runs_npm_ci_itself_when_node_modules_is_missing(tmp_path):
    oidc = _oidc(tmp_path)
    log = tmp_path / "npm.log"
    npm = f'echo "$@" >> {log}; mkdir -p {oidc}/node_modules; touch {oidc}/node_modules/.package-lock.json'
    path = _bin(tmp_path, "node", "mkdir", "touch", npm=npm)
    target = f"{oidc}/node_modules/.package-lock.json"
    done = _make(f"OIDC={oidc}", target, path=path)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split() == ["ci", "--prefix", str(oidc), "--no-audit", "--no-fund",
                                       "--loglevel=error"]  # fmt: skip
    # Installed: the next run leaves it alone, until the lock file changes.
    assert _make(f"OIDC={oidc}", target, path=path).returncode == 0
    assert len(log.read_text().splitlines()) == 1
    os.utime(oidc / "package-lock.json")
    later = (oidc / "node_modules" / ".package-lock.json").stat().st_mtime + 5
    os.utime(oidc / "package-lock.json", (later, later))
    assert _make(f"OIDC={oidc}", target, path=path).returncode == 0
    assert len(log.read_text().splitlines()) == 2


def test_without_redis_make_test_says_what_to_install(tmp_path):
    done = _make("test-prerequisites", path=_bin(tmp_path, "node", "npm"))
    _one_line(done, "make test: redis-server is not installed: install it ")


@pytest.mark.parametrize(
    ("python", "line"),
    [
        ('[ "$1" = --version ] && { echo "Python 3.9.2"; exit 0; }; exit 1',
         "make: c360 needs Python >= 3.11, and {python} is Python 3.9.2: install one "),
        ('[ "$1" = -c ] && case "$2" in *ensurepip*) exit 1;; esac; exit 0',
         "make: {python} cannot make a virtualenv: install its venv module "),
    ],
)  # fmt: skip
def test_make_demo_says_which_python_it_needs(tmp_path, python, line):
    # The first fake is Python 3.9 (`-c` fails the version check); the second
    # passes it but has no ensurepip (Debian without python3-venv).
    path = _bin(tmp_path, python3=python)
    venv = tmp_path / "venv"
    done = _make(f"VENV={venv}", f"PYTHON={path}/python3", "demo", path=path)
    _one_line(done, line.format(python=f"{path}/python3"))
    assert not venv.exists()


def test_make_demo_without_any_python3_says_so(tmp_path):
    done = _make(f"VENV={tmp_path / 'venv'}", "PYTHON=python3", "demo", path=_bin(tmp_path))
    _one_line(done, "make: c360 needs Python >= 3.11, and python3 is missing: install one ")
