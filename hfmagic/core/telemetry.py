"""No network connection the user did not ask for: the switches that keep each library's telemetry
off, in the kernel and in every worker. ``HFMAGIC_ALLOW_TELEMETRY=1`` leaves them as they ship.

- onnxruntime's Linux build carries a telemetry client that looks up Microsoft's hosts once torch is
  loaded too: ``ORT_DISABLE_TELEMETRY=1`` before onnxruntime is first imported (``import hfmagic``
  sets it; workers inherit it through the environment).
- OpenVINO (and NNCF through it) sends Google Analytics events and writes ``~/intel/`` through
  ``openvino_telemetry``: kept from importing, OpenVINO uses its own stub.
- Ray's usage statistics: ``RAY_USAGE_STATS_ENABLED=0`` before a cluster is reached or started.
"""

from __future__ import annotations

import os
import sys

ALLOW = "HFMAGIC_ALLOW_TELEMETRY"


def allowed() -> bool:
    """The user opted in (HFMAGIC_ALLOW_TELEMETRY=1): every library as it ships."""
    return os.environ.get(ALLOW) == "1"


def onnxruntime_off() -> None:
    if not allowed():
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def openvino_off() -> None:
    if not allowed():
        sys.modules.setdefault("openvino_telemetry", None)


def ray_off() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
