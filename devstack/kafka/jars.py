"""Fetch the Kafka broker's jars from Maven Central into a per-user cache, once."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

_HERE = Path(__file__).resolve().parent
POM = _HERE / "pom.xml"
LOG4J_CONFIG = _HERE / "log4j2.properties"
_MARKER = ".complete"
_MVN_TIMEOUT_S = 900


class KafkaJarsError(RuntimeError):
    """The broker's jars could not be resolved or are not where they should be."""


def kafka_version(pom: Path = POM) -> str:
    """Return the Kafka version the pom pins (the pom is the single source of truth)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        msg = f"{pom} has no <kafka.version> property"
        raise KafkaJarsError(msg)
    return (node.text or "").strip()


def cache_root() -> Path:
    """Return the per-user cache directory of this project (honours XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sls-kafka-processor"


def lib_dir(pom: Path = POM) -> Path:
    """Return where the jars for the pom's Kafka version live (fetched or not)."""
    return cache_root() / f"kafka-{kafka_version(pom)}" / "lib"


def _pom_digest(pom: Path) -> str:
    # A changed pom (e.g. another log4j pin) must not reuse jars resolved for the old one.
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def is_fetched(pom: Path = POM) -> bool:
    """Tell whether the jars for this exact pom are already cached."""
    marker = lib_dir(pom) / _MARKER
    return marker.is_file() and marker.read_text().strip() == _pom_digest(pom)


def fetch_jars(pom: Path = POM) -> Path:
    """Make sure the broker's jars are cached and return the lib directory.

    Runs ``mvn dependency:copy-dependencies`` only when the cache is missing or was made from another
    pom, so a second call needs no network. The marker file is written last: an interrupted copy is
    redone rather than trusted.
    """
    lib = lib_dir(pom)
    if is_fetched(pom):
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    # Two processes (a test run and `dev up`) may fetch at once; the second waits, then finds the marker.
    with (lib.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_fetched(pom):
            return lib
        _copy_dependencies(pom, lib)
        (lib / _MARKER).write_text(_pom_digest(pom) + "\n")
    return lib


def _copy_dependencies(pom: Path, lib: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven ('mvn') is not on PATH; it is needed once to fetch the Kafka broker jars"
        raise KafkaJarsError(msg)
    shutil.rmtree(lib, ignore_errors=True)
    # Maven is run on a copy so that nothing is written next to an installed (maybe read-only) package.
    work_pom = lib.parent / "pom.xml"
    shutil.copyfile(pom, work_pom)
    cmd = [
        mvn, "-B", "-q", "-f", str(work_pom), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={lib}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired as exc:
        msg = f"fetching the Kafka jars with Maven took over {_MVN_TIMEOUT_S}s: {' '.join(cmd)}"
        raise KafkaJarsError(msg) from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        msg = f"Maven could not fetch the Kafka jars (exit {proc.returncode}): {' '.join(cmd)}\n{tail}"
        raise KafkaJarsError(msg)
    if not any(lib.glob("kafka_2.13-*.jar")):
        msg = f"Maven succeeded but {lib} holds no kafka_2.13 jar"
        raise KafkaJarsError(msg)
