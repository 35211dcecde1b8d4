"""`sls-kafka package`: build the FC code package (zip) that `s.yaml`'s `code:` points at."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from processor.packaging import PLATFORM, build_package

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Relative to the project directory, where s.yaml expects it (`code: ./dist/fc-code.zip`).
DEFAULT_OUTPUT = Path("dist/fc-code.zip")
# s.yaml's runtime is python3.10.
DEFAULT_PYTHON = "3.10"


def register(sub: Any) -> None:
    p = sub.add_parser("package", help="build the FC code package (zip) for s.yaml",
                       description="Build the Function Compute code package: index.py, processor/ and checkpoints/ "
                       "plus the runtime dependencies of pyproject.toml as manylinux x86-64 wheels for the target "
                       "Python (pure-Python packages that ship only a source archive are built into wheels here), "
                       "at the versions installed here, where the tests ran. Downloads through pip, using its cache.")
    p.add_argument("--output", type=Path, default=None,
                   help=f"zip to write (default: <project>/{DEFAULT_OUTPUT}, which s.yaml's code: names)")
    p.add_argument("--python-version", default=DEFAULT_PYTHON, metavar="X.Y",
                   help=f"Python of the FC runtime the wheels are for (default: {DEFAULT_PYTHON}, s.yaml's "
                   "python3.10)")
    p.add_argument("--platform", action="append", dest="platforms", metavar="TAG",
                   help=f"wheel platform tag, repeatable (default: {PLATFORM}: FC's python3.10 runs Debian 10, glibc "
                   "2.28; older manylinux wheels are taken under it too)")
    p.add_argument("--no-bytecode", dest="bytecode", action="store_false",
                   help="leave out the .pyc files (by default every module is compiled by a pythonX.Y of the target "
                   "version, found on PATH or under pyenv, so that FC does not compile them at each cold start)")
    p.add_argument("--project-dir", type=Path, default=PROJECT_DIR,
                   help="source checkout to package (default: the one this command runs from)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        msg = f"--python-version {args.python_version!r} is not a Python 3 version like 3.10"
        raise ConfigError(msg)
    project = args.project_dir.resolve()
    output = (args.output or project / DEFAULT_OUTPUT).resolve()
    platforms = args.platforms or [PLATFORM]
    bad = [p for p in platforms if not re.fullmatch(r"manylinux[\w.]*_x86_64", p)]
    if bad:
        msg = f"--platform {bad[0]!r} is not a manylinux x86-64 tag (FC runs x86-64 Linux), e.g. {PLATFORM}"
        raise ConfigError(msg)
    result = build_package(project, output, args.python_version, platforms, args.bytecode)
    built = f"; built here from source: {', '.join(result.built_locally)}" if result.built_locally else ""
    compiled = f"; bytecode by {result.compiled_with}" if result.compiled_with else "; no bytecode"
    sys.stdout.write(f"versions as tested here: {', '.join(result.pinned)}\n"
                     f"{result.path}: {result.size_bytes / 1_048_576:.1f} MiB, {result.file_count} files, "
                     f"for Python {result.python_version} on {', '.join(result.platforms)}{built}{compiled}\n")
    return 0
