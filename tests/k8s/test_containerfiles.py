"""Every `Containerfile` in the repo: multi-stage, slim, non-root, no build tools or secrets in
the final stage, no HEALTHCHECK (Kubernetes probes do it)."""

from __future__ import annotations

import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from app.core.config import PROJECT_ROOT

SKIP_DIRS = {".venv", ".git", "node_modules", ".run", "reports"}
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|make|build-essential|cmake|rustc|cargo|python3?-dev|libpq-dev)\b"
)
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
SLIM_BASE = re.compile(r"(-slim|distroless|alpine|wolfi|chainguard|ubi-micro|ubi-minimal)")


def _containerfiles() -> list[Path]:
    found = []
    for path in PROJECT_ROOT.rglob("*"):
        if path.name in {"Containerfile", "Dockerfile"} and not SKIP_DIRS & set(
            path.relative_to(PROJECT_ROOT).parts
        ):
            found.append(path)
    return sorted(found)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _stages(path: Path) -> tuple[list[Stage], DockerfileParser]:
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    stages: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif instruction != "COMMENT" and stages:
            stages[-1].instructions.append((instruction, value))
    return stages, parser


def _env_names(value: str) -> list[str]:
    """Names set by `ENV a=1 b=2` or the legacy `ENV a 1` form."""
    if "=" not in value.split()[0]:
        return [value.split()[0]]
    return [word.split("=", 1)[0] for word in shlex.split(value) if "=" in word]


CONTAINERFILES = _containerfiles()


def test_the_app_containerfile_is_found() -> None:
    assert PROJECT_ROOT / "Containerfile" in CONTAINERFILES


def problems(path: Path) -> list[str]:
    """Every rule a Containerfile breaks (empty: it is fine)."""
    found: list[str] = []
    stages, parser = _stages(path)
    if len(stages) < 2:
        found.append("single stage: build tools must stay in a builder stage")
    for image in parser.parent_images:
        if image.lower() != "scratch" and not SLIM_BASE.search(image):
            found.append(f"base image {image!r} is not a slim/minimal image")
    for stage in stages:
        for instruction, value in stage.instructions:
            if instruction == "HEALTHCHECK":
                found.append("HEALTHCHECK: Kubernetes probes do that")
            if instruction in {"ENV", "ARG"}:
                found += [
                    f"{instruction} {n} bakes a secret"
                    for n in _env_names(value)
                    if SECRET_NAME.search(n)
                ]
    if not stages:
        return found
    final = stages[-1]
    users = [value for instruction, value in final.instructions if instruction == "USER"]
    uid, _, gid = (users[-1] if users else "").partition(":")
    if not uid.isdigit():
        found.append("the final stage needs a numeric USER (runAsNonRoot verifies a number)")
    elif int(uid) == 0 or (gid.isdigit() and int(gid) == 0):
        found.append("the final stage runs as root")
    if not any(i == "COPY" and v.startswith("--from=") for i, v in final.instructions):
        found.append("the final stage copies nothing from a build stage")
    for instruction, value in final.instructions:
        if instruction != "RUN":
            continue
        if re.search(
            r"\b(apt-get|apt|apk|dnf|microdnf|yum)\b.*\binstall\b", value
        ) and BUILD_TOOLS.search(value):
            found.append(f"build tools in the final stage: {value}")
        if re.search(r"\bpip3? install\b", value) and "--no-cache-dir" not in value:
            found.append(f"pip cache kept in the final stage: {value}")
    cmd = [v for i, v in final.instructions if i in {"CMD", "ENTRYPOINT"}]
    if not cmd:
        found.append("no CMD/ENTRYPOINT")
    else:
        try:
            exec_form = isinstance(json.loads(cmd[-1]), list)
        except json.JSONDecodeError:
            exec_form = False
        if not exec_form:
            found.append("CMD in shell form: signals would not reach the process")
    return found


@pytest.mark.parametrize(
    "path", CONTAINERFILES, ids=[str(p.relative_to(PROJECT_ROOT)) for p in CONTAINERFILES]
)
def test_containerfile_properties(path: Path) -> None:
    assert problems(path) == []


GOOD = (PROJECT_ROOT / "Containerfile").read_text()
BAD_VARIANTS = {
    "single stage": (
        'FROM python:3.11-slim\nCOPY app /app\nUSER 10001\nCMD ["python"]\n',
        "single stage",
    ),
    "root": (GOOD.replace("USER 10001:10001", "USER 0"), "runs as root"),
    "named user": (GOOD.replace("USER 10001:10001", "USER ticketrush"), "numeric USER"),
    "healthcheck": (
        GOOD + "HEALTHCHECK CMD curl -f http://localhost:8000/healthz\n",
        "HEALTHCHECK",
    ),
    "secret env": (
        GOOD.replace("PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=1 TR_JWT_SECRET=x"),
        "bakes a secret",
    ),
    "build tools": (
        GOOD.replace("WORKDIR /tmp", "RUN apt-get update && apt-get install -y gcc\nWORKDIR /tmp"),
        "build tools in the final stage",
    ),
    "pip cache": (
        GOOD.replace("WORKDIR /tmp", "RUN pip install httpx\nWORKDIR /tmp"),
        "pip cache kept",
    ),
    "fat base": (GOOD.replace("python:3.11-slim-bookworm", "python:3.11-bookworm"), "not a slim"),
    "shell cmd": (
        GOOD.replace('CMD ["python", "-m", "app.api"]', "CMD python -m app.api"),
        "shell form",
    ),
}


@pytest.mark.parametrize("variant", sorted(BAD_VARIANTS))
def test_the_checks_catch_a_bad_containerfile(variant: str, tmp_path: Path) -> None:
    text, expected = BAD_VARIANTS[variant]
    path = tmp_path / "Containerfile"
    path.write_text(text)
    found = problems(path)
    assert any(expected in problem for problem in found), found


def test_app_image_entry_points_exist() -> None:
    """The chart runs these commands in the app image; each must be a real module or script."""
    import importlib.util
    import tomllib

    for module in ("app.api", "app.admission", "app.booking_consumer", "app.payments_sim"):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.loader is not None, module
        source = Path(spec.origin or "").read_text()
        assert 'if __name__ == "__main__":' in source, f"{module} is runnable with python -m"
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ticket-rush"] == "app.cli:main"


def context_entries(name: str = ".containerignore") -> list[str]:
    """The paths the ignore file lets into the build context (`*` then `!path` lines)."""
    lines = [
        line.strip()
        for line in (PROJECT_ROOT / name).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", f"{name} starts by excluding everything"
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def test_build_context_is_limited_and_enough() -> None:
    assert context_entries(".containerignore") == context_entries(".dockerignore")
    allowed = context_entries()
    assert {"pyproject.toml", "README.md", "app"} <= set(allowed)
    assert not {".venv", ".run", ".git", "tests", "reports"} & set(allowed)
    # Every file a Containerfile COPYs from the context (builds run from the repo root) is in it.
    for path in CONTAINERFILES:
        stages, _ = _stages(path)
        for stage in stages:
            for instruction, value in stage.instructions:
                if instruction not in {"COPY", "ADD"} or value.startswith("--from="):
                    continue
                *sources, _dest = [w for w in value.split() if not w.startswith("--")]
                for source in sources:
                    source = source.rstrip("/")
                    assert any(
                        source == entry or source.startswith(entry + "/") for entry in allowed
                    ), f"{path.relative_to(PROJECT_ROOT)} copies {source}, outside the context"


def test_the_build_context_builds_a_complete_package(tmp_path: Path) -> None:
    """What the image installs: the package built from exactly the files .containerignore lets
    in must carry every module, the migrations and the seed data the entry points read."""
    import shutil
    import subprocess
    import sys
    import zipfile

    context = tmp_path / "context"
    context.mkdir()
    for name in context_entries():
        source = PROJECT_ROOT / name
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, context / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(context),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    (wheel,) = tmp_path.glob("ticket_rush-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    # script.py.mako only serves `alembic revision` (development, not the image).
    needed = {
        str(p.relative_to(context))
        for p in (context / "app").rglob("*")
        if p.is_file() and p.name != "script.py.mako"
    }
    assert needed - packaged == set()
    assert any(name.startswith("app/migrations/versions/") for name in packaged)
