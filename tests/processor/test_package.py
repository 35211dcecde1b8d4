"""`sls-kafka package`: real builds through pip (PyPI, pip's cache), and the zip's own rules offline."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from collections import Counter
from importlib import metadata
from pathlib import Path

import pytest

from processor import packaging
from processor.cli import main
from processor.package_targets import name_of
from processor.packaging import PackagingError
from tests.pipeline_support import shard_events
from tests.processor.commands_support import stack_fixture  # noqa: F401  (the `stack` fixture)

pytestmark = pytest.mark.slow  # pip-installs the code package

ROOT = Path(__file__).resolve().parents[2]
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def run_package(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["package", *args]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def built_here(tmp_path_factory):
    """The package built for this Python, so that it can be imported here; (zip, command output)."""
    output = tmp_path_factory.mktemp("package") / "fc-code.zip"
    return output, run_package("--output", str(output), "--python-version", THIS_PYTHON)


@pytest.fixture(scope="module")
def unzipped(built_here, tmp_path_factory):
    dest = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(built_here[0]) as zf:
        zf.extractall(dest)
    return dest


def test_package_reports_size_and_file_count(built_here):
    output, printed = built_here
    with zipfile.ZipFile(output) as zf:
        count = len(zf.namelist())
    mib = output.stat().st_size / 1_048_576
    assert f"{output}: {mib:.1f} MiB, {count} files, for Python {THIS_PYTHON} on manylinux_2_28_x86_64" in printed
    # aliyun-log-python-sdk ships only a source archive: the fallback must have built it.
    assert "built here from source: aliyun-log-python-sdk" in printed


def test_package_holds_project_and_dependencies_not_dev_files(built_here):
    with zipfile.ZipFile(built_here[0]) as zf:
        names = set(zf.namelist())
    for required in ("index.py", "processor/handler.py", "processor/commands/package.py", "checkpoints/base.py",
                     "common/cursors.py",
                     "aliyun/log/logclient.py", "confluent_kafka/__init__.py", "orjson/__init__.py",
                     "tenacity/__init__.py", "lz4/block/__init__.py"):
        assert required in names
    tops = {n.split("/", 1)[0] for n in names}
    assert not tops & {"devstack", "tests", "bench", "bin", "dist", "s.yaml", "pyproject.toml"}


def test_package_holds_bytecode_of_the_target_python_for_every_module(built_here):
    tag = f"cpython-{THIS_PYTHON.replace('.', '')}"
    with zipfile.ZipFile(built_here[0]) as zf:
        names = set(zf.namelist())
    bytecode = {n for n in names if n.endswith(".pyc")}
    assert bytecode
    assert all(re.fullmatch(rf"(.*/)?__pycache__/[^/]+\.{tag}\.pyc", n) for n in bytecode), sorted(bytecode)[:5]
    sources = [n for n in names if n.endswith(".py")]
    missing = [n for n in sources if pyc_of(n, tag) not in names]
    assert not missing, missing[:5]


def pyc_of(source: str, tag: str) -> str:
    folder, _, name = source.rpartition("/")
    return f"{folder}/__pycache__/{name[:-3]}.{tag}.pyc".lstrip("/")


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def import_without_compiling(python: str, unzipped: Path) -> None:
    """Import the handler from the unzipped package with `python`: it must use the .pyc files as unzipped.

    `extractall` dates every file now, as a fresh FC instance's unzip may: a timestamp-checked .pyc would then
    be stale, compiled again and rewritten, which the comparison of the tree before and after shows.
    """
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(unzipped)!r})
        import index, processor.handler, aliyun.log, confluent_kafka, google.protobuf
        loaded = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(
            {str(unzipped)!r}) and m.__file__.endswith(".py")]
        assert len(loaded) > 100, len(loaded)
        print("ok")
    """)
    before = tree_state(unzipped)
    proc = subprocess.run([python, "-I", "-S", "-c", script], cwd=unzipped, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert tree_state(unzipped) == before


def test_package_bytecode_is_used_as_unzipped(unzipped):
    import_without_compiling(sys.executable, unzipped)


def test_package_imports_in_isolation(unzipped):
    # -I -S: no site-packages, no PYTHONPATH, no current directory; only the unzipped package is added.
    script = textwrap.dedent(f"""
        import sys, sysconfig
        sys.path.insert(0, {str(unzipped)!r})
        import index, processor.handler, checkpoints.kafka_txn, checkpoints.sls_consumer_group
        assert callable(index.handler) and callable(index.initialize)
        runtime = index.initialize(None)        # configuration from the environment, as on FC
        runtime.sink.producer                   # librdkafka accepts the processor's producer settings
        import lz4.block, aliyun.log
        assert lz4.block.decompress(lz4.block.compress(b"x" * 100)) == b"x" * 100
        aliyun.log.LogClient("http://127.0.0.1:1", "id", "secret")
        stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
        outside = sorted(name for name, m in list(sys.modules.items())
                         if getattr(m, "__file__", None) and not m.__file__.startswith({str(unzipped)!r})
                         and not m.__file__.startswith(stdlib))
        assert not outside, outside
        print("ok", len(sys.modules))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SLS_", "CHECKPOINT_", "PYTHON"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", KAFKA_TOPIC="t", FC_FUNCTION_NAME="package-test")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=unzipped, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ")


@pytest.fixture(scope="module")
def built_for_fc(tmp_path_factory):
    """The package as `sls-kafka package` builds it by default (python3.10, FC's platform): (zip, output, unzipped)."""
    output = tmp_path_factory.mktemp("fc-package") / "fc-code.zip"
    printed = run_package("--output", str(output))
    code = tmp_path_factory.mktemp("fc-code")
    with zipfile.ZipFile(output) as zf:
        zf.extractall(code)
    return output, printed, code


def test_package_default_target_has_python310_binaries_and_bytecode(built_for_fc, tmp_path):
    output, printed, _ = built_for_fc
    with zipfile.ZipFile(output) as zf:
        libs = [n for n in zf.namelist() if n.endswith(".so") and ".cpython-" in n]
        bytecode = [n for n in zf.namelist() if n.endswith(".pyc")]
        zf.extractall(tmp_path / "code")
    assert libs
    assert all(re.search(r"\.cpython-310-x86_64-linux-gnu\.so$", n) for n in libs), libs
    assert bytecode
    assert all(n.endswith(".cpython-310.pyc") for n in bytecode), bytecode[:5]
    python310 = re.search(r"; bytecode by (\S+python3\.10)$", printed.strip())
    assert python310, printed
    import_without_compiling(python310[1], tmp_path / "code")


def test_package_without_bytecode_holds_none(tmp_path):
    output = tmp_path / "fc-code.zip"
    assert run_package("--output", str(output), "--python-version", THIS_PYTHON, "--no-bytecode").strip().endswith(
        "; no bytecode")
    with zipfile.ZipFile(output) as zf:
        assert not [n for n in zf.namelist() if "__pycache__" in n or n.endswith(".pyc")]


def test_find_interpreter_names_the_missing_version_and_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setattr(packaging, "_PYENV_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PackagingError, match=r"no Python 3\.9 interpreter .*pyenv install 3\.9.*--no-bytecode"):
        packaging.find_interpreter("3.9")


def test_package_bad_python_version_exits_2(capsys, tmp_path):
    assert main(["package", "--output", str(tmp_path / "x.zip"), "--python-version", "latest"]) == 2
    assert "--python-version 'latest'" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_package_non_manylinux_platform_exits_2(capsys, tmp_path):
    assert main(["package", "--output", str(tmp_path / "x.zip"), "--platform", "macosx_11_0_arm64"]) == 2
    assert "--platform 'macosx_11_0_arm64' is not a manylinux x86-64 tag" in capsys.readouterr().err


def test_package_not_a_checkout_exits_2(capsys, tmp_path):
    assert main(["package", "--project-dir", str(tmp_path), "--output", str(tmp_path / "x.zip")]) == 2
    assert "missing index.py, processor, checkpoints" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- offline


def test_runtime_requirements_read_project_dependencies():
    assert any(r.startswith("aliyun-log-python-sdk") for r in packaging.runtime_requirements(ROOT))
    assert not any(r.startswith(("pytest", "ruff")) for r in packaging.runtime_requirements(ROOT))


def test_runtime_requirements_missing_list_raises(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(PackagingError, match="no \\[project\\] dependencies"):
        packaging.runtime_requirements(tmp_path)


def test_write_zip_is_reproducible_keeps_modes_skips_bytecode(tmp_path):
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (src / "pkg" / "stale.pyc").write_bytes(b"\0")
    (src / "lib.so").write_bytes(b"\x7fELF")
    (src / "lib.so").chmod(0o755)
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert packaging.write_zip(src, first) == 2
    os.utime(src / "lib.so", (0, 0))  # a newer mtime must not change the bytes
    packaging.write_zip(src, second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        assert zf.namelist() == ["lib.so", "pkg/__init__.py"]
        assert (zf.getinfo("lib.so").external_attr >> 16) & 0o777 == 0o755
    assert not (tmp_path / "a.zip.partial").exists()


class FakePip:
    """Stands in for `python -m pip`: install fails for the names in `no_wheel` until a wheel is built for it."""

    def __init__(self, no_wheel: set[str], built_name: str = "sdk-1.0-py3-none-any.whl") -> None:
        self.no_wheel = no_wheel
        self.built_name = built_name
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if args[0] == "wheel":
            wheel_dir = Path(args[args.index("--wheel-dir") + 1])
            (wheel_dir / self.built_name).write_bytes(b"")
            self.no_wheel.discard(args[-1])
            return subprocess.CompletedProcess(args, 0, "", "")
        if self.no_wheel:
            missing = sorted(self.no_wheel)[0]
            return subprocess.CompletedProcess(args, 1, "", f"ERROR: No matching distribution found for {missing}\n")
        return subprocess.CompletedProcess(args, 0, "", "")


def test_install_dependencies_builds_missing_pure_wheel_and_retries(tmp_path, monkeypatch):
    pip = FakePip({"sdk<2,>=1"})
    monkeypatch.setattr(packaging, "_pip", pip)
    built = packaging.install_dependencies(["sdk<2,>=1", "other"], tmp_path / "t", tmp_path, "3.10")
    assert built == ("sdk<2,>=1",)
    assert [c[0] for c in pip.calls] == ["install", "wheel", "install"]
    install = pip.calls[0]
    for flag in ("--platform", "manylinux2014_x86_64", "--only-binary=:all:", "--python-version", "3.10",
                 "--implementation", "cp", "--no-compile"):
        assert flag in install
    assert pip.calls[1][pip.calls[1].index("--no-binary") + 1] == "sdk"


def test_install_dependencies_passes_every_platform(tmp_path, monkeypatch):
    pip = FakePip(set())
    monkeypatch.setattr(packaging, "_pip", pip)
    packaging.install_dependencies(["x"], tmp_path / "t", tmp_path, "3.10",
                                   ("manylinux_2_28_x86_64", "manylinux2014_x86_64"))
    (install,) = pip.calls
    # pip takes only the tags it is given: each is followed by the older ones a system of its glibc runs.
    tags = [install[i + 1] for i, a in enumerate(install) if a == "--platform"]
    assert tags[:3] == ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64"]
    assert tags.index("manylinux_2_17_x86_64") + 1 == tags.index("manylinux2014_x86_64")
    assert tags[-1] == "manylinux1_x86_64"
    assert len(tags) == len(set(tags))


def test_install_dependencies_refuses_platform_wheel_from_source(tmp_path, monkeypatch):
    monkeypatch.setattr(packaging, "_pip", FakePip({"native"}, built_name="native-1.0-cp311-cp311-linux_x86_64.whl"))
    with pytest.raises(PackagingError, match="cannot be built for FC"):
        packaging.install_dependencies(["native"], tmp_path / "t", tmp_path, "3.10")
    assert not list(tmp_path.glob("*.whl"))


def test_install_dependencies_other_pip_failure_raises_with_pip_output(tmp_path, monkeypatch):
    def failing(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "ERROR: Could not install packages due to an OSError\n")
    monkeypatch.setattr(packaging, "_pip", failing)
    with pytest.raises(PackagingError, match="due to an OSError"):
        packaging.install_dependencies(["x"], tmp_path / "t", tmp_path, "3.10")


def test_package_ships_the_dependency_versions_tested_here(built_for_fc):
    output, printed, _ = built_for_fc
    pins = [f"{name}=={metadata.version(name)}" for name in
            (name_of(r) for r in packaging.runtime_requirements(ROOT))]
    assert f"versions as tested here: {', '.join(pins)}" in printed
    with zipfile.ZipFile(output) as zf:
        names = set(zf.namelist())
    assert f"confluent_kafka-{metadata.version('confluent-kafka')}.dist-info/METADATA" in names
    assert f"orjson-{metadata.version('orjson')}.dist-info/METADATA" in names


def test_package_runs_the_handler_under_python310_against_kafka_and_sls(built_for_fc, stack):
    """The zip as FC's python3.10 runtime runs it: `index.initialize`, then `index.handler` per trigger event."""
    _, _, code = built_for_fc
    python310 = packaging.find_interpreter("3.10")
    stack.write(400)
    events = [e.decode() for e in shard_events(stack.client, stack.endpoint, stack.project, stack.logstore)]
    script = textwrap.dedent(f"""
        import json, sys
        from types import SimpleNamespace
        sys.path.insert(0, {str(code)!r})
        import index
        assert sys.version_info[:2] == (3, 10), sys.version
        index.initialize(None)
        context = SimpleNamespace(function=SimpleNamespace(timeout=60), credentials=None, request_id="zip-test")
        for event in json.loads(sys.stdin.read()):
            print(json.dumps(index.handler(event, context)))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SLS_", "CHECKPOINT_", "PYTHON"))}
    env.update(stack.variables)
    proc = subprocess.run([str(python310), "-I", "-S", "-c", script], input=json.dumps(events), cwd=code, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    summaries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [s["produced"] for s in summaries] == [200, 200]
    assert stack.delivered() == Counter(stack.written)
