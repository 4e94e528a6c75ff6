"""Setup on a stock machine: the torch step (scripts/install_torch.sh, which setup.sh and the Dockerfile run)
run for real by a pip that knows only its index, against PEP 503 indexes served on 127.0.0.1.

PyPI serves no ``+cpu`` builds of torch, so a pip that looks only there stops at "No matching
distribution". Here a local folder stands in for PyPI (it has no torch at all) and another for the
PyTorch index (``<TORCH_INDEX>/cpu/torch/<wheel>``, holding only the torch wheel). The wheel is this
machine's own (symlinked from a find-links folder) where there is one, else a small stand-in wheel
with the pinned name: what is tested is where the step finds it, not what torch does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).parents[1]
TORCH_STEP = ROOT / "scripts/install_torch.sh"
WHEEL_FOLDERS = ("/opt/wheels",)  # where these machines keep the torch wheel (pip's find-links)


def torch_pin() -> str:
    """The pinned torch version, e.g. ``2.13.0+cpu``: requirements/constraints.txt is the one place it is written."""
    line = next(x for x in (ROOT / "requirements/constraints.txt").read_text().splitlines() if x.startswith("torch=="))
    return line.removeprefix("torch==")


def torch_wheel(folder: Path) -> Path:
    """The pinned torch wheel linked (not copied: 200 MB) into ``folder``, or a stand-in with its name and version."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    places = [*os.environ.get("PIP_FIND_LINKS", "").split(), *WHEEL_FOLDERS]
    for place in places:
        found = sorted(Path(place).glob(f"torch-{torch_pin()}-{tag}-{tag}-*.whl")) if Path(place).is_dir() else []
        if found:
            (folder / found[0].name).symlink_to(found[0])
            return folder / found[0].name
    return _stand_in_wheel(folder, torch_pin())


def _stand_in_wheel(folder: Path, version: str) -> Path:
    dist = f"torch-{version}.dist-info"
    files = {
        "torch_stand_in.py": "",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: twinflow-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    path = folder / f"torch-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{dist}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"]))
    return path


@contextlib.contextmanager
def served(root: Path) -> Iterator[tuple[str, list[str]]]:
    """``root`` over HTTP on 127.0.0.1 (directory listings are PEP 503 pages to pip): (URL, paths requested)."""
    requested: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # quiet: pip asks often
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


def stock_pip(pypi: str, target: Path, **extra: str) -> dict[str, str]:
    """The environment of a pip that knows only ``pypi``: this machine's pip configuration, find-links,
    extra indexes and constraints left out. It installs into ``target`` (pip's --target also ignores
    the torch already installed in this environment)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL=pypi,
        PIP_TARGET=str(target),
        PIP_NO_CACHE_DIR="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        **extra,
    )
    return env


def run_torch_step(torch_index: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TORCH_STEP), sys.executable, torch_index], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # unpacks the real torch wheel (700 MB) where this machine has one
def test_the_torch_step_installs_the_pinned_cpu_wheel_from_the_torch_index_on_a_stock_pip(tmp_path: Path) -> None:
    root = tmp_path / "indexes"
    (root / "pypi" / "torch").mkdir(parents=True)  # PyPI as far as this pin goes: no +cpu build
    wheel = torch_wheel(root / "pytorch" / "cpu" / "torch")
    target = tmp_path / "target"
    try:
        with served(root) as (url, requested):
            result = run_torch_step(f"{url}/pytorch", stock_pip(f"{url}/pypi/", target))
        assert result.returncode == 0, result.stdout + result.stderr
        assert (target / f"torch-{torch_pin()}.dist-info").is_dir()
        # Looked where pip looks by default first, then on the PyTorch CPU index, for torch alone.
        assert requested[0] == "/pypi/torch/"
        torch_index = [path for path in requested if path.startswith("/pytorch/")]
        assert torch_index[0] == "/pytorch/cpu/torch/"
        assert unquote(torch_index[-1]) == f"/pytorch/cpu/torch/{wheel.name}"
        assert all(path.startswith("/pytorch/cpu/torch/") for path in torch_index)
    finally:
        shutil.rmtree(target, ignore_errors=True)  # a real torch is 700 MB unpacked


def test_the_torch_step_takes_a_wheel_pip_already_finds_and_never_asks_the_torch_index(tmp_path: Path) -> None:
    """These machines and offline mirrors: the wheel lies in a find-links folder, the PyTorch index is out of reach."""
    wheels = tmp_path / "wheels"
    wheel = torch_wheel(wheels)
    root = tmp_path / "indexes"
    (root / "pypi" / "torch").mkdir(parents=True)
    report = tmp_path / "pip-report.json"
    with served(root) as (url, requested):
        env = stock_pip(
            f"{url}/pypi/", tmp_path / "target", PIP_FIND_LINKS=str(wheels), PIP_DRY_RUN="1", PIP_REPORT=str(report)
        )
        result = run_torch_step(f"{url}/pytorch", env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [path for path in requested if path.startswith("/pytorch/")]
    (chosen,) = json.loads(report.read_text())["install"]
    assert chosen["metadata"]["version"] == torch_pin()
    assert unquote(chosen["download_info"]["url"]) == f"file://{wheel}"


def test_the_torch_step_names_both_places_it_looked_when_neither_has_the_wheel(tmp_path: Path) -> None:
    root = tmp_path / "indexes"
    (root / "pypi" / "torch").mkdir(parents=True)
    (root / "pytorch" / "cpu" / "torch").mkdir(parents=True)
    with served(root) as (url, _):
        result = run_torch_step(f"{url}/pytorch", stock_pip(f"{url}/pypi/", tmp_path / "target"))
    assert result.returncode == 1
    assert f"torch=={torch_pin()} is on neither pip's own index nor {url}/pytorch/cpu" in result.stderr
    assert "Traceback" not in result.stderr


def _setup(tmp_path: Path, python: str) -> subprocess.CompletedProcess:
    """scripts/setup.sh for a new environment in ``tmp_path``: without Python 3.11 it stops before installing."""
    env = {**os.environ, "PYTHON": python, "VENV": str(tmp_path / "venv")}
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_setup_says_in_one_line_how_to_get_python_311(tmp_path: Path) -> None:
    missing = _setup(tmp_path, str(tmp_path / "python3.11"))
    assert missing.returncode == 2 and missing.stdout == ""
    (line,) = missing.stderr.splitlines()
    assert line.startswith(f"setup: twinflow needs Python 3.11 ({tmp_path / 'python3.11'}: not found;")
    assert "uv python install 3.11" in line

    newer = tmp_path / "python3"  # what current distributions ship
    newer.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Python 3.12.3" && exit 0\nexit 1\n')
    newer.chmod(0o755)
    result = _setup(tmp_path, str(newer))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert f"({newer}: Python 3.12.3;" in result.stderr
    assert not (tmp_path / "venv").exists()
