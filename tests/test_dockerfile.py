"""Static checks of the Dockerfile (no Docker engine here): same install route as setup, lean non-root image."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from twinflow.core.packages import PACKAGES
from twinflow.pipelines.kubeflow.specfile import DEFAULT_SERVING_DIR, IMAGE_SCHEMA_DIR
from twinflow.serving.manifests import MODEL_DIR, ManifestOptions

ROOT = Path(__file__).parents[1]
CONSTRAINTS = "requirements/constraints.txt"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def stages() -> list[list[tuple[str, str]]]:
    """Instructions per build stage (the ARGs before the first FROM are dropped)."""
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions((ROOT / "Dockerfile").read_text()):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def pip_installs(script: str) -> list[list[str]]:
    """Each ``pip install`` command in a shell text, as tokens (quotes removed)."""
    commands = re.split(r"&&|;|\|\||\bthen\b|\bfi\b", script)
    return [shlex.split(c) for c in commands if re.search(r"\bpip install\b", c)]


def option(tokens: list[str], name: str) -> str | None:
    return tokens[tokens.index(name) + 1] if name in tokens else None


def runs(stage: list[tuple[str, str]]) -> list[str]:
    return [args for kind, args in stage if kind == "RUN"]


def project_installs(commands: list[list[str]]) -> list[list[str]]:
    """Installs of the project itself: their target is ``.`` (optionally with extras)."""
    return [c for c in commands if any(re.fullmatch(r"-?e?\s*'?\.(\[[\w,]+\])?'?", t) for t in c[3:])]


def test_image_installs_the_project_the_way_setup_does() -> None:
    setup = project_installs(pip_installs(re.sub(r"\\\n", " ", (ROOT / "scripts/setup.sh").read_text())))
    image = project_installs([c for run in runs(stages()[0]) for c in pip_installs(run)])
    assert setup and len(image) == 2  # dependencies from the lock files, then the code
    for command in [*setup, *image]:
        assert "--ignore-requires-python" in command, command
        assert option(command, "-c") == CONSTRAINTS, command
    assert "." in image[0] and "." in image[1] and "--no-deps" in image[1]


def test_every_pip_install_in_the_image_keeps_no_cache_and_torch_comes_from_its_own_step() -> None:
    commands = [c for stage in stages() for run in runs(stage) for c in pip_installs(run)]
    assert commands
    assert all("--no-cache-dir" in c for c in commands), [c for c in commands if "--no-cache-dir" not in c]
    torch_pin = next(line for line in (ROOT / CONSTRAINTS).read_text().splitlines() if line.startswith("torch=="))
    assert torch_pin.endswith("+cpu")  # a local version only the PyTorch index serves
    for dependencies in project_installs(commands):  # torch is installed already: no other index is asked
        assert option(dependencies, "--extra-index-url") is None and option(dependencies, "--index-url") is None
    assert re.search(r"ARG TORCH_INDEX=https://download\.pytorch\.org/whl\b", (ROOT / "Dockerfile").read_text())


def test_image_and_setup_install_torch_with_the_one_script_before_the_project() -> None:
    """scripts/install_torch.sh (run for real in tests/test_setup_torch.py) is the torch step of both routes."""
    build = stages()[0]
    assert ("COPY", "scripts/install_torch.sh scripts/") in build
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert ignore.index("!scripts/install_torch.sh") > ignore.index("scripts")  # the last match wins: sent
    (dependencies_run,) = [run for run in runs(build) if "install_torch.sh" in run]
    calls = re.findall(r"(\S+=\S+ )?scripts/install_torch\.sh ([^&;]*)", dependencies_run)
    assert [(env.strip(), shlex.split(args)) for env, args in calls] == [
        ("PIP_NO_CACHE_DIR=1", ["python", "${TORCH_INDEX}"])
    ]
    assert len(project_installs(pip_installs(dependencies_run))) == 1  # the dependencies, after torch:
    assert dependencies_run.index("install_torch.sh") < dependencies_run.index(f"-c {CONSTRAINTS}")
    setup = re.sub(r"\\\n", " ", (ROOT / "scripts/setup.sh").read_text())
    step = 'scripts/install_torch.sh "$VENV/bin/python" "$TORCH_INDEX"'
    assert setup.count(step) == 1
    assert setup.index(step) < setup.index("-c requirements/constraints.txt -e '.[dev]'")


def _gpu_install(tmp_path: Path, *argv: str) -> tuple[list[str], list[str]]:
    """scripts/install_gpu_build.sh run for real with an interpreter that records what pip was asked:
    (pip's arguments, the lines of the constraints file it was given)."""
    recorder = tmp_path / "python"
    recorder.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$@" > {tmp_path}/argv\n'
        'while [[ $# -gt 0 ]]; do [[ $1 == -c ]] && cp "$2" ' + f"{tmp_path}/constraints; shift; done\n"
    )
    recorder.chmod(0o755)
    subprocess.run([str(ROOT / "scripts/install_gpu_build.sh"), str(recorder), *argv], cwd=ROOT, check=True)
    return (tmp_path / "argv").read_text().splitlines(), (tmp_path / "constraints").read_text().splitlines()


def _pin(name: str) -> str:
    return next(line for line in (ROOT / CONSTRAINTS).read_text().splitlines() if line.startswith(f"{name}=="))


def test_gpu_builds_swap_only_their_framework_pin(tmp_path: Path) -> None:
    pins = (ROOT / CONSTRAINTS).read_text().splitlines()
    torch_args, torch_constraints = _gpu_install(tmp_path, "torch", "cu128", "https://wheels.example/whl")
    assert torch_args[:2] == ["-m", "pip"] and "--ignore-requires-python" in torch_args
    assert option(torch_args, "--extra-index-url") == "https://wheels.example/whl/cu128"
    assert torch_args[-1] == _pin("torch").replace("+cpu", "+cu128")
    assert torch_constraints == [line for line in pins if not line.startswith("torch==")]

    tf_args, tf_constraints = _gpu_install(tmp_path, "tensorflow")
    assert tf_args[-1] == _pin("tensorflow").replace("tensorflow==", "tensorflow[and-cuda]==")
    assert "--ignore-requires-python" in tf_args and tf_constraints == pins

    refused = subprocess.run(
        [str(ROOT / "scripts/install_gpu_build.sh"), "python", "jax"], cwd=ROOT, capture_output=True
    )
    assert refused.returncode == 2 and b"expected tensorflow or torch" in refused.stderr


def test_image_and_setup_install_gpu_builds_with_the_one_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M) and re.search(r"^ARG TF_VARIANT=cpu$", text, re.M)
    build = stages()[0]
    assert ("COPY", "scripts/install_gpu_build.sh scripts/") in build
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert ignore.index("!scripts/install_gpu_build.sh") > ignore.index("scripts")  # the last match wins: sent
    calls = re.findall(r"(\S+=\S+ )?scripts/install_gpu_build\.sh ([^;]*);", " ".join(runs(build)))
    assert [shlex.split(args)[:2] for _, args in calls] == [["python", "tensorflow"], ["python", "torch"]]
    assert all(env.strip() == "PIP_NO_CACHE_DIR=1" for env, _ in calls)  # as every other pip install in the image
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert 'scripts/install_gpu_build.sh "$VENV/bin/python" "$GPU"' in setup and "--extra-index-url" not in setup


def test_runtime_stage_is_lean_non_root_and_selects_tf_keras() -> None:
    build, runtime = stages()[:2]  # then 'serving' and the default 'pipeline' (test_plain_build_…)
    assert build[0][1].endswith("AS build") and runtime[0][1].endswith("AS runtime")
    assert build[0][1].split()[0] == runtime[0][1].split()[0]  # same base: the venv's python is there
    env = " ".join(args for kind, args in runtime if kind == "ENV")
    assert "TF_USE_LEGACY_KERAS=1" in env.split()
    assert "PATH=/opt/venv/bin:$PATH" in env.split()
    assert ("COPY", "--from=build /opt/venv /opt/venv") in runtime
    run_text = " ".join(runs(runtime))
    assert not re.search(r"apt-get install|build-essential|gcc|pip install", run_text)
    users = [args for kind, args in runtime if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [kind for kind, _ in runtime].index("USER") > max(i for i, (k, _) in enumerate(runtime) if k == "RUN")


def test_image_paths_match_what_compile_defaults_to() -> None:
    runtime = stages()[1]
    assert ("COPY", f"schemas/ {IMAGE_SCHEMA_DIR}/") in runtime
    assert DEFAULT_SERVING_DIR in " ".join(runs(runtime))  # exists and belongs to the non-root user


def test_every_package_the_project_ships_is_copied_and_not_ignored() -> None:
    build = stages()[0]
    copies = [args for kind, args in build if kind == "COPY"]
    assert "pyproject.toml setup.py README.md ./" in copies and "core/packages.py core/" in copies  # step 1: deps
    assert ". ." in copies  # step 2: the project, every package folder core.packages lists
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    shipped = {*PACKAGES, "setup.py", "pyproject.toml", "requirements", "README.md"}
    assert not ignored & shipped
    assert {".git", ".venv", "work", "tests"} <= ignored


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_are_importable_as_the_spec_names_them(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()  # regular packages: 'pip install .' ships them


def stage(name: str) -> list[tuple[str, str]]:
    """The build stage declared ``AS name``."""
    (found,) = [s for s in stages() if s[0][1].split()[-1] == name and s[0][1].split()[-2].upper() == "AS"]
    return found


def exec_form(stage_: list[tuple[str, str]], kind: str) -> list[str]:
    """A JSON-form ENTRYPOINT or CMD of a stage (the last one wins, as in Docker)."""
    return json.loads([args for k, args in stage_ if k == kind][-1])


def test_serving_stage_runs_the_model_server_on_the_runtime_image() -> None:
    serving = stage("serving")
    assert serving[0] == ("FROM", "runtime AS serving")
    exposed = {port for kind, args in serving if kind == "EXPOSE" for port in args.split()}
    assert {"8080", "8501"} <= exposed
    assert exec_form(serving, "ENTRYPOINT") == ["twinflow", "serve"]
    cmd = exec_form(serving, "CMD")
    assert option(cmd, "--serving-dir") == MODEL_DIR  # where KServe's storage initializer puts the models
    assert option(cmd, "--host") == "0.0.0.0"
    port = str(ManifestOptions(image="i", serving_uri="s3://b/s").port)  # what the KServe manifest declares
    assert option(cmd, "--port") == port and port in exposed
    assert not {kind for kind, _ in serving} & {"RUN", "USER"}  # the runtime's non-root user, nothing added


def test_build_stage_copies_and_import_checks_the_serving_package() -> None:
    build = stages()[0]
    checks = [run for run in runs(build) if "python -c" in run]
    assert checks and re.search(r"import [^\"]*\btwinflow\.serving\.app\b", checks[-1])
    assert re.search(r"import [^\"]*\btwinflow\.pipelines\.cli\b", checks[-1])


def test_plain_build_still_gives_the_pipeline_image() -> None:
    """The last stage is what a plain build (and scripts/image.sh) builds: the runtime, with no ENTRYPOINT."""
    last = stages()[-1]
    assert last == [("FROM", "runtime AS pipeline")]
    assert "ENTRYPOINT" not in {kind for kind, _ in stage("runtime")}
