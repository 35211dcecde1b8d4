"""A function's code made runnable: the zip built or taken, unpacked, and checked under the runtime's Python.

The check imports the handler and the initializer in a probe instance (nothing of them runs), so an unknown
handler or a zip without its dependencies is refused at deploy time, not at the first trigger.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

from devstack.fc.instances import Deployment, Instance, InstanceDied
from devstack.fc.spec import DeployError, FunctionSpec
from processor.packaging import PackagingError, build_package, find_interpreter

_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


def runtime_python(spec: FunctionSpec) -> Path:
    try:
        return find_interpreter(spec.python_version)
    except PackagingError as exc:
        msg = f"function {spec.name}: runtime {spec.runtime} needs a Python {spec.python_version} interpreter: {exc}"
        raise DeployError(msg) from None


def code_zip(spec: FunctionSpec, project_dir: Path) -> Path:
    """`code:` as is when it exists; a missing zip is built from this checkout, as `sls-kafka package` would."""
    if spec.code.exists():
        return spec.code
    if spec.code.suffix != ".zip" or not (project_dir / "pyproject.toml").exists():
        msg = f"function {spec.name}: code {spec.code} does not exist"
        raise DeployError(msg)
    try:
        build_package(project_dir, spec.code, spec.python_version)
    except PackagingError as exc:
        msg = f"function {spec.name}: could not build {spec.code} for {spec.runtime}: {exc}"
        raise DeployError(msg) from None
    return spec.code


def unpack(code: Path, work_dir: Path) -> Path:
    """The code's directory: a directory as is, a zip unpacked once per content (redeploying it is instant)."""
    if code.is_dir():
        return code
    digest = hashlib.sha256(code.read_bytes()).hexdigest()[:16]
    target = work_dir / "code" / digest
    if target.is_dir():
        return target
    partial = target.with_name(digest + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(code) as zf:
            zf.extractall(partial)
    except (OSError, zipfile.BadZipFile) as exc:
        msg = f"code {code} is not a readable zip: {exc}"
        raise DeployError(msg) from None
    partial.rename(target)
    return target


def prepare(spec: FunctionSpec, work_dir: Path, project_dir: Path, credentials: Mapping[str, str],
            network_env: Mapping[str, str]) -> Deployment:
    python = runtime_python(spec)
    code_dir = unpack(code_zip(spec, project_dir), work_dir)
    deployment = Deployment(spec, code_dir, python, credentials, network_env)
    probe(deployment)
    return deployment


def probe(deployment: Deployment) -> None:
    spec = deployment.spec
    instance = Instance(deployment, lambda _line: None)
    try:
        instance.start(probe=True)
    except InstanceDied as exc:
        error = exc.args[0]
        text = f"{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}"
        missing = _MISSING_MODULE.search(text)
        entry_modules = {h.rpartition(".")[0] for h in (spec.handler, spec.initializer) if h}
        if missing and missing[1].split(".")[0] not in {m.split(".")[0] for m in entry_modules}:
            why = f"the code lacks the dependency '{missing[1]}' (build the zip with `sls-kafka package`)"
        else:
            why = f"handler {spec.handler}" + (f" / initializer {spec.initializer}" if spec.initializer else "")
            why += " cannot be loaded"
        msg = f"function {spec.name}: {why}: {text} (under {deployment.python}, code {deployment.code_dir})"
        raise DeployError(msg) from None
    finally:
        instance.kill()
