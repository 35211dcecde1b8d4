"""What the FC code package is built for: the wheel platform tags FC's runtime takes, and the dependency versions.

The versions are the ones installed here, where the tests ran: the runtime requirements are pinned to them and
every other distribution of this environment is passed to pip as a constraint, so the zip cannot drift from what
was tested (it once shipped confluent-kafka 2.4.0 while the tests ran 2.16.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from common.errors import ProcessorError

# FC's python3.10 runtime is Debian 10 (buster, glibc 2.28); packages such as confluent-kafka after 2.4 ship only
# manylinux_2_28 wheels. Older tags run there too, and pip takes only the tags it is given (`older_platforms`).
PLATFORM = "manylinux_2_28_x86_64"
_MANYLINUX = re.compile(r"manylinux_2_(\d+)_x86_64")
# PEP 600 tags by glibc minor, and the older names of the same glibc levels.
_LEGACY = {17: "manylinux2014_x86_64", 12: "manylinux2010_x86_64", 5: "manylinux1_x86_64"}
# This project's own distribution is what is being packaged, not a dependency.
_OWN_DISTRIBUTION = "sls-kafka-processor"


class PackagingError(ProcessorError):
    """The code package could not be built (pip failed, or a dependency has no usable wheel or was not tested)."""


def older_platforms(platforms: Sequence[str]) -> list[str]:
    """Each tag followed by every older manylinux x86-64 tag (a glibc 2.28 system runs manylinux2014 wheels)."""
    out: list[str] = []
    for platform in platforms:
        match = _MANYLINUX.fullmatch(platform)
        tags = [platform]
        if match is not None:
            for minor in range(int(match[1]) - 1, 4, -1):
                tags += [f"manylinux_2_{minor}_x86_64", *([_LEGACY[minor]] if minor in _LEGACY else [])]
        out += [t for t in tags if t not in out]
    return out


def name_of(requirement: str) -> str:
    return re.split(r"[^A-Za-z0-9._-]", requirement, maxsplit=1)[0]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tested_pins(requirements: Sequence[str]) -> tuple[str, ...]:
    """`name==version` of each runtime requirement as installed here; a missing one means nothing was tested."""
    pins = []
    for requirement in requirements:
        name = name_of(requirement)
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            msg = (f"{name} is not installed here, so no version of it was tested: install the project "
                   "(python3 -m pip install -e '.[dev]') and run the tests before packaging")
            raise PackagingError(msg) from None
    return tuple(pins)


def tested_constraints(path: Path, exclude: set[str]) -> Path:
    """A pip constraints file pinning every distribution installed here (dependencies of dependencies too)."""
    skipped = {_canonical(n) for n in (*exclude, _OWN_DISTRIBUTION)}
    pins = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                   if d.metadata["Name"] and _canonical(d.metadata["Name"]) not in skipped})
    path.write_text("\n".join(pins) + "\n")
    return path
