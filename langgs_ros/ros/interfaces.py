"""This package's ROS interfaces (``msg/``, ``srv/``) as rosbags types, for use without ROS 2.

Parsing the interface files with rosbags' parser is also how CI checks them: a field with an
unknown type or a syntax error fails here exactly as it would in ``rosidl_generate_interfaces``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from langgs_ros.errors import ConfigError

__all__ = ["interface_dir", "interface_types", "typestore_with_interfaces", "PACKAGE"]

PACKAGE = "langgs_ros"


def interface_dir() -> Path:
    """Directory holding ``msg/`` and ``srv/``: $LANGGS_INTERFACES_DIR, the source tree, or the
    installed share directory."""
    candidates = [Path(os.environ["LANGGS_INTERFACES_DIR"])] if os.environ.get("LANGGS_INTERFACES_DIR") else []
    candidates += [Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / PACKAGE]
    for base in candidates:
        if (base / "msg").is_dir() and (base / "srv").is_dir():
            return base
    raise ConfigError(f"cannot find the {PACKAGE} msg/ and srv/ directories (looked in "
                      f"{', '.join(map(str, candidates))}); set LANGGS_INTERFACES_DIR")


def interface_types(base: Path | None = None) -> dict[str, Any]:
    """rosbags type definitions of every ``msg/*.msg`` and ``srv/*.srv`` (as ``_Request`` and
    ``_Response`` messages)."""
    from rosbags.typesys import get_types_from_msg

    base = base or interface_dir()
    types: dict[str, Any] = {}
    for path in sorted((base / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    for path in sorted((base / "srv").glob("*.srv")):
        parts = path.read_text().split("\n---\n")
        if len(parts) != 2:
            raise ConfigError(f"{path}: a service needs exactly one '---' line between request and response")
        for part, suffix in zip(parts, ("Request", "Response")):
            # rosbags names every parsed type <pkg>/msg/<name>; services keep ROS's <pkg>/srv/<name>
            (_, definition), = get_types_from_msg(part, f"{PACKAGE}/msg/{path.stem}_{suffix}").items()
            types[f"{PACKAGE}/srv/{path.stem}_{suffix}"] = definition
    return types


def typestore_with_interfaces(base: Path | None = None) -> Any:
    """The rosbags Humble typestore with this package's interfaces registered."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(interface_types(base))
    return store
