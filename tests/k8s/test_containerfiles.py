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


@pytest.mark.parametrize(
    "path", CONTAINERFILES, ids=[str(p.relative_to(PROJECT_ROOT)) for p in CONTAINERFILES]
)
def test_containerfile_properties(path: Path) -> None:
    stages, parser = _stages(path)
    assert len(stages) >= 2, "multi-stage: build tools stay in a builder stage"
    for image in parser.parent_images:
        if image.lower() != "scratch":
            assert SLIM_BASE.search(image), f"base image {image!r} is not a slim/minimal image"
    all_instructions = [i for stage in stages for i, _ in stage.instructions]
    assert "HEALTHCHECK" not in all_instructions, "Kubernetes probes replace HEALTHCHECK"
    for stage in stages:
        for instruction, value in stage.instructions:
            if instruction in {"ENV", "ARG"}:
                for name in _env_names(value):
                    assert not SECRET_NAME.search(name), f"{instruction} {name} bakes a secret"

    final = stages[-1]
    users = [value for instruction, value in final.instructions if instruction == "USER"]
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "USER is numeric so runAsNonRoot can verify it"
    assert int(uid) != 0 and (not gid or int(gid) != 0)
    assert any(
        instruction == "COPY" and value.startswith("--from=")
        for instruction, value in final.instructions
    ), "the final stage copies the built result from an earlier stage"
    for instruction, value in final.instructions:
        if instruction != "RUN":
            continue
        if re.search(r"\b(apt-get|apt|apk|dnf|microdnf|yum)\b.*\binstall\b", value):
            assert not BUILD_TOOLS.search(value), f"build tools in the final stage: {value}"
        if re.search(r"\bpip3? install\b", value):
            assert "--no-cache-dir" in value, f"pip cache kept in the final stage: {value}"
    cmd = [
        value for instruction, value in final.instructions if instruction in {"CMD", "ENTRYPOINT"}
    ]
    assert cmd, "the image says what it runs"
    assert isinstance(json.loads(cmd[-1]), list), "exec form, so signals reach the process"


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


def test_build_context_is_limited() -> None:
    for name in (".containerignore", ".dockerignore"):
        lines = [
            line.strip()
            for line in (PROJECT_ROOT / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert lines[0] == "*", f"{name} starts by excluding everything"
        allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
        assert allowed == {"pyproject.toml", "README.md", "app"}, allowed
