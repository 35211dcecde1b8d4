"""Reading one channel's section of the rules file: typed values, `${env:NAME}` secrets, errors naming the key."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.errors import ConfigError

ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


class ChannelConfigError(ConfigError):
    """A channel's configuration is wrong; the message names the channel and the key."""


class Section:
    """One channel's mapping, read key by key; a key outside `known` (a typo) is refused before any is read."""

    def __init__(self, channel: str, raw: Mapping[str, Any], known: frozenset[str],
                 environ: Mapping[str, str] | None = None, base_dir: Path | None = None) -> None:
        self.channel = channel
        self._raw = raw
        self._environ = os.environ if environ is None else environ
        self._base_dir = base_dir
        unknown = sorted(str(k) for k in set(raw) - known - {"type"})
        if unknown:
            raise self.error(unknown[0], f"unknown key; expected one of {', '.join(sorted(known))}")

    def error(self, key: str, problem: str) -> ChannelConfigError:
        return ChannelConfigError(f"channel {self.channel!r}: {key}: {problem}")

    def _get(self, key: str, default: Any, required: bool) -> Any:
        if key not in self._raw or self._raw[key] is None:
            if required:
                raise self.error(key, "is required")
            return default
        return self._raw[key]

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(key, default, required)
        if value is default:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type(value).__name__} {value!r}")
        return self._expand(key, value)

    def strings(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        """A list of strings; one string alone counts as a list of one."""
        value = self._get(key, None, required)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise self.error(key, f"expected a string or a list of strings, got {value!r}")
        if required and not items:
            raise self.error(key, "needs at least one entry")
        return tuple(self._expand(key, i) for i in items)

    def number(self, key: str, default: float | None, *, integer: bool = False) -> Any:
        value = self._get(key, default, False)
        if isinstance(value, str):  # e.g. a port from `${env:SMTP_PORT}`
            value = self._expand(key, value)
            try:
                value = int(value) if integer else float(value)
            except ValueError:
                raise self.error(key, f"expected a number, got {value!r}") from None
        if value is None or isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            if value is None and default is None:
                return None
            raise self.error(key, f"expected {'an integer' if integer else 'a number'}, got {value!r}")
        if value <= 0:
            raise self.error(key, f"must be positive, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self._get(key, {}, False)
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(key, f"expected a mapping of names to strings, got {value!r}")
        return {str(k): self._expand(f"{key}.{k}", v) for k, v in value.items()}

    def relative(self, value: str) -> Path:
        """A path as written in the rules file: a relative one is taken from the file's directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() or self._base_dir is None else self._base_dir / path

    def path(self, key: str) -> Path | None:
        """An existing file's path."""
        value = self.string(key)
        if value is None:
            return None
        path = self.relative(value)
        if not path.is_file():
            raise self.error(key, f"no such file: {path}")
        return path

    def _expand(self, key: str, value: str) -> str:
        def resolve(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._environ:
                raise self.error(key, f"environment variable {name} (referenced as ${{env:{name}}}) is not set")
            return self._environ[name]
        return ENV_REFERENCE.sub(resolve, value)
