"""The host an SLS request goes to, checked before the first request so a wrong endpoint fails at once.

The SDK sends every request to `http://<project>.<endpoint>` (a bare IPv4 address without a port is the only
endpoint it uses as is), and retries a connection error 10 times, 1 s apart, before the caller sees it. A
name that does not resolve would otherwise cost those retries and then ours, until the time budget ran out.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from aliyun.log.util import Util
from requests.utils import get_environ_proxies, select_proxy

from common.errors import ConfigError, SourceError
from common.sls_errors import EMULATOR_SUFFIX, unresolved_message

# Names this process resolved: an FC instance checks its endpoint once, not per invocation.
_resolved: set[tuple[str, int]] = set()


@dataclass(frozen=True)
class Target:
    """Where the SDK sends a request for `project` on `endpoint`, as its LogClient builds the URL."""

    endpoint: str
    url: str
    host: str
    port: int

    @classmethod
    def of(cls, endpoint: str, project: str) -> Target:
        text = endpoint.strip()
        scheme, sep, rest = text.partition("://")
        if not sep:
            scheme, rest = "http", text
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.partition(":")
        default_port = 443 if scheme.lower() == "https" else 80
        try:
            number = int(port) if port else default_port
        except ValueError:
            msg = f"SLS endpoint {endpoint!r} has a bad port {port!r}; expected e.g. cn-hangzhou.log.aliyuncs.com"
            raise ConfigError(msg) from None
        if not Util.is_row_ip(text) and project:
            host = f"{project}.{host}"
        return cls(endpoint, f"{scheme}://{host}:{number}/", host, number)

    def proxy(self) -> str | None:
        """The proxy requests (and so the SDK) will use for this URL, from HTTP(S)_PROXY and NO_PROXY."""
        return select_proxy(self.url, get_environ_proxies(self.url))


def check_endpoint(endpoint: str, project: str) -> None:
    """Fail now, naming the host and what to do, if the SDK's requests for `project` cannot reach a resolvable host.

    Through a proxy the proxy resolves the name (the SLS emulator answers any). Otherwise a name that does not
    exist is a ConfigError; a resolver that failed for now (EAI_AGAIN) a SourceError, which may pass on retry.
    """
    target = Target.of(endpoint, project)
    if target.proxy() or (target.host, target.port) in _resolved:
        return
    try:
        socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        msg = f"{unresolved_message(target.host)} (endpoint {endpoint!r}, project {project!r}; {exc.strerror})"
        if exc.errno == socket.EAI_AGAIN and not target.host.endswith(EMULATOR_SUFFIX):
            raise SourceError(msg) from None
        raise ConfigError(msg) from None
    _resolved.add((target.host, target.port))
