"""Build the FC code package: the project and its runtime dependencies, as a zip for `s.yaml`'s `code:`.

Dependencies are installed from manylinux x86-64 wheels for the *target* Python (FC's runtime), not this one's,
with pip's `--platform/--python-version/--only-binary` options. pip refuses source distributions in that mode, and
aliyun-log-python-sdk ships only one; such a package is built into a wheel here (`pip wheel --no-deps`) and
offered to the install, which is sound only when that wheel is pure Python (`*-none-any.whl`), as the SDK's is.

Every dependency is installed at the version installed here, where the tests ran, for the platform FC's runtime
takes (`processor.package_targets`).

Every module is then compiled to bytecode by an interpreter of the target Python (found on PATH or under pyenv),
so that an FC instance imports .pyc files instead of compiling ~400 modules at each cold start (about 0.6 s).
The .pyc files are "unchecked-hash" ones: the zip's fixed dates, and FC's unzipping, make the usual
timestamp-checked .pyc look stale, and the package never changes once deployed.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from processor.package_targets import (
    PLATFORM,
    PackagingError,
    name_of,
    older_platforms,
    tested_constraints,
    tested_pins,
)

log = logging.getLogger(__name__)

# What FC needs to run `index.handler`: not devstack/ (local stack) nor tests/.
# The alert evaluator's entry point and package travel too: the evaluator is the second function in s.yaml.
PROJECT_PATHS = ("index.py", "processor", "checkpoints", "common", "alerting", "alerts_index.py")
# Bytecode of this Python is useless to another one; pip is told not to write it and copies skip it, and the
# target Python's is compiled into the staging tree afterwards.
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}
_PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser()
# pip's wording when no wheel matches; stable across pip releases since 2018.
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
# Each round builds one missing wheel; a dependency tree needing more is not worth guessing at.
MAX_LOCAL_BUILDS = 10
# The zip format's earliest date, for every entry: the same inputs give the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PackageResult:
    path: Path
    size_bytes: int
    file_count: int
    python_version: str
    platforms: tuple[str, ...]
    built_locally: tuple[str, ...]
    compiled_with: Path | None
    pinned: tuple[str, ...] = ()  # the runtime requirements as name==version, the versions tested here


# Extras the package needs too: s.yaml's evaluator runs from the same zip, and its channels render with jinja2.
PACKAGED_EXTRAS = ("alerts",)


def runtime_requirements(project_dir: Path) -> list[str]:
    """`[project.dependencies]` of the project's pyproject.toml, and those of the extras the package ships."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        msg = "sls-kafka package reads pyproject.toml with tomllib: run it with Python 3.11 or newer"
        raise PackagingError(msg) from None
    path = project_dir / "pyproject.toml"
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise PackagingError(msg) from None
    deps = doc.get("project", {}).get("dependencies")
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        msg = f"{path} has no [project] dependencies list"
        raise PackagingError(msg)
    extras = doc["project"].get("optional-dependencies", {})
    return deps + [d for extra in PACKAGED_EXTRAS for d in extras.get(extra, [])]


def build_package(project_dir: Path, output: Path, python_version: str,
                  platforms: Sequence[str] = (PLATFORM,), bytecode: bool = True) -> PackageResult:
    """Install the dependencies for `python_version` on `platforms`, add the project, compile it all for that
    Python (unless not `bytecode`), zip it to `output`."""
    missing = [p for p in PROJECT_PATHS if not (project_dir / p).exists()]
    if missing:
        msg = f"{project_dir} is not a source checkout of the project (missing {', '.join(missing)})"
        raise PackagingError(msg)
    # Looked for first: a missing interpreter should fail before minutes of downloads.
    interpreter = find_interpreter(python_version) if bytecode else None
    requirements = runtime_requirements(project_dir)
    pinned = tested_pins(requirements)
    with tempfile.TemporaryDirectory(prefix="sls-kafka-package-") as tmp:
        staging, wheels = Path(tmp) / "code", Path(tmp) / "wheels"
        wheels.mkdir()
        # The pins are the requirements themselves: a pinned source-only package then reads as "no matching
        # distribution", which builds it here; as a constraint it reads as a conflict.
        constraints = tested_constraints(Path(tmp) / "constraints.txt", exclude={name_of(r) for r in requirements})
        built = install_dependencies(pinned, staging, wheels, python_version, platforms, constraints)
        # Console scripts point at this machine's interpreter; FC only imports.
        shutil.rmtree(staging / "bin", ignore_errors=True)
        for name in PROJECT_PATHS:
            copy_project_path(project_dir / name, staging / name)
        if interpreter is not None:
            compile_bytecode(staging, interpreter)
        count = write_zip(staging, output, bytecode=interpreter is not None)
    return PackageResult(output, output.stat().st_size, count, python_version, tuple(platforms), built, interpreter,
                         pinned)


def find_interpreter(python_version: str) -> Path:
    """A Python `python_version` interpreter to compile with: `pythonX.Y` on PATH, else pyenv's newest X.Y.*."""
    candidates = [found] if (found := shutil.which(f"python{python_version}")) else []
    candidates += sorted(glob.glob(str(_PYENV_ROOT / "versions" / f"{python_version}.*" / "bin" /
                                       f"python{python_version}")), reverse=True)
    for candidate in candidates:
        # pyenv's shim exists for every installed version but fails unless that version is selected.
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == python_version:
            return Path(candidate)
    msg = (f"no Python {python_version} interpreter to compile the package's bytecode with (looked for "
           f"python{python_version} on PATH and under {_PYENV_ROOT / 'versions'}): install one, e.g. "
           f"`pyenv install {python_version}`, or pass --no-bytecode (each FC cold start then compiles every "
           "module)")
    raise PackagingError(msg)


def compile_bytecode(tree: Path, interpreter: Path) -> None:
    """Compile every module under `tree` with `interpreter`, as unchecked-hash .pyc files in __pycache__/.

    Paths in the bytecode are relative to `tree` (`-s`), so tracebacks on FC name the files as imported.
    """
    result = subprocess.run([str(interpreter), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                             "unchecked-hash", "-s", str(tree), str(tree)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        msg = f"{interpreter} could not compile the package:\n{_tail(result.stdout + result.stderr)}"
        raise PackagingError(msg)


def install_dependencies(requirements: Sequence[str], target: Path, wheel_dir: Path, python_version: str,
                         platforms: Sequence[str] = (PLATFORM,), constraints: Path | None = None) -> tuple[str, ...]:
    """`pip install --target` from target-platform wheels; returns the requirements built into wheels here."""
    platform_args = [arg for platform in older_platforms(platforms) for arg in ("--platform", platform)]
    constraint_args = ["--constraint", str(constraints)] if constraints is not None else []
    built: list[str] = []
    while True:
        result = _pip("install", "--target", str(target), "--no-compile", *platform_args, "--only-binary=:all:",
                      "--python-version", python_version, "--implementation", "cp", "--find-links", str(wheel_dir),
                      *constraint_args, *requirements)
        if result.returncode == 0:
            return tuple(built)
        match = _NO_MATCH.search(result.stderr)
        if match is None or match[1] in built or len(built) >= MAX_LOCAL_BUILDS:
            msg = f"pip could not install the dependencies for Python {python_version}:\n{_tail(result.stderr)}"
            raise PackagingError(msg)
        requirement = match[1]
        log.info("%s has no wheel for %s; building it from source", requirement, ", ".join(platforms))
        build_pure_wheel(requirement, wheel_dir, constraint_args)
        built.append(requirement)
        # A failed --target install can leave a partial tree behind.
        shutil.rmtree(target, ignore_errors=True)


def build_pure_wheel(requirement: str, wheel_dir: Path, pip_args: Sequence[str] = ()) -> Path:
    """Build `requirement` (without its dependencies) into a wheel; refuse it unless it is pure Python."""
    before = set(wheel_dir.glob("*.whl"))
    # From source even if this machine's platform has a wheel: that wheel would not fit FC's platform.
    name = name_of(requirement)
    result = _pip("wheel", "--no-deps", "--no-binary", name, "--wheel-dir", str(wheel_dir), *pip_args, requirement)
    new = sorted(set(wheel_dir.glob("*.whl")) - before)
    if result.returncode != 0 or len(new) != 1:
        msg = f"could not build a wheel for {requirement}:\n{_tail(result.stderr)}"
        raise PackagingError(msg)
    wheel = new[0]
    if not wheel.name.endswith("-none-any.whl"):
        wheel.unlink()
        msg = (f"{requirement} has no wheel for FC's platform and Python, and its source builds a platform wheel "
               f"({wheel.name}), which cannot be built for FC on this machine")
        raise PackagingError(msg)
    return wheel


def copy_project_path(source: Path, dest: Path) -> None:
    if source.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        return
    for path in _walk(source):
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def write_zip(source_dir: Path, output: Path, bytecode: bool = False) -> int:
    """Zip `source_dir`'s tree (paths relative to it, sorted, fixed dates, modes kept); returns the file count.

    Bytecode is left out unless `bytecode` (the tree was compiled for the target Python).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    files = sorted(_walk(source_dir, bytecode))
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(source_dir).as_posix(), _ZIP_DATE)
            # Keep the execute bit on shared libraries and helpers; FC unzips with these modes.
            info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    os.replace(partial, output)
    return len(files)


def _walk(root: Path, bytecode: bool = False) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if bytecode or d not in _SKIPPED_DIRS)
        for name in filenames:
            if bytecode or Path(name).suffix not in _SKIPPED_SUFFIXES:
                yield Path(dirpath) / name


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", *args]
    log.debug("running %s", " ".join(cmd))
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
