"""An Alibaba Cloud SLS (Log Service) emulator that the unmodified aliyun-log-python-sdk talks to.

Start it in-process with `EmulatorServer` or as ``python -m devstack.sls_emulator``.
"""

from __future__ import annotations

from .errors import SlsError
from .faults import Fault, FaultInjector
from .server import EmulatorServer

__all__ = ["EmulatorServer", "Fault", "FaultInjector", "SlsError"]
