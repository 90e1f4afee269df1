"""Building ROS messages by type name, from rclpy's generated classes or from rosbags' typestore.

Conversion code (:mod:`langgs_ros.ros.conversions`) builds every message through a
:class:`MessageFactory`, passing numpy arrays for primitive sequences. :class:`RclpyMessages`
(on a robot) and :class:`RosbagsMessages` (in tests and bag writing, no ROS 2 needed) turn that
into their own message classes, which share ROS's field names.
"""

from __future__ import annotations

import array
import importlib
from typing import Any, Protocol

import numpy as np

__all__ = ["MessageFactory", "RclpyMessages", "RosbagsMessages"]

_TYPECODES = {np.dtype(np.uint8): "B", np.dtype(np.int8): "b", np.dtype(np.uint16): "H",
              np.dtype(np.int16): "h", np.dtype(np.uint32): "I", np.dtype(np.int32): "i",
              np.dtype(np.float32): "f", np.dtype(np.float64): "d"}


class MessageFactory(Protocol):
    """``make("sensor_msgs/msg/PointCloud2", header=..., data=np_uint8_array)``: a message whose
    other fields keep their defaults."""

    def make(self, type_name: str, **fields: Any) -> Any: ...


class RclpyMessages:
    """Messages of rclpy's generated Python classes (``sensor_msgs.msg.PointCloud2``...)."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}

    def _class(self, type_name: str) -> type:
        cls = self._classes.get(type_name)
        if cls is None:
            package, kind, name = type_name.split("/")
            module = importlib.import_module(f"{package}.{kind}")
            if kind == "srv" and name.endswith(("_Request", "_Response")):  # Query_Response -> Query.Response
                service, part = name.rsplit("_", 1)
                cls = getattr(getattr(module, service), part)
            else:
                cls = getattr(module, name)
            self._classes[type_name] = cls
        return cls

    def make(self, type_name: str, **fields: Any) -> Any:
        cls = self._class(type_name)
        msg = cls()
        field_types = cls.get_fields_and_field_types()
        for name, value in fields.items():
            if isinstance(value, np.ndarray) and field_types.get(name, "").startswith("sequence<"):
                # array.array is the fast path of rclpy's sequence setters (no per-element checks);
                # fixed-size arrays (``double[9]``) take numpy arrays as they are
                value = array.array(_TYPECODES[value.dtype], value.tobytes())
            elif field_types.get(name) == "octet" and isinstance(value, (int, np.integer)):
                value = bytes([int(value)])  # rclpy's byte fields take one-byte bytes
            setattr(msg, name, value)
        return msg


class RosbagsMessages:
    """Messages of a rosbags typestore (default: the Humble store plus this package's interfaces)."""

    def __init__(self, typestore: Any | None = None) -> None:
        if typestore is None:
            from langgs_ros.ros.interfaces import typestore_with_interfaces

            typestore = typestore_with_interfaces()
        self.typestore = typestore

    def _default(self, node: tuple[Any, Any]) -> Any:
        kind, detail = int(node[0]), node[1]
        if kind == 1:  # base type
            name = detail[0]
            if name == "string":
                return ""
            if name == "bool":
                return False
            return np.dtype(name if name not in ("byte", "char", "octet") else "uint8").type(0)
        if kind == 2:  # nested message
            return self.make(detail)
        elem, length = detail
        if int(elem[0]) == 1 and elem[1][0] != "string":
            dtype = "uint8" if elem[1][0] in ("byte", "char", "octet") else elem[1][0]
            return np.zeros(length if kind == 3 else 0, dtype=dtype)
        return [self._default(elem) for _ in range(length)] if kind == 3 else []

    def make(self, type_name: str, **fields: Any) -> Any:
        cls = self.typestore.types[type_name]
        _, defs = self.typestore.fielddefs[type_name]
        values = {name: fields[name] if name in fields else self._default(node) for name, node in defs}
        unknown = fields.keys() - values.keys()
        if unknown:
            raise TypeError(f"{type_name} has no field(s) {sorted(unknown)}")
        return cls(**values)
