"""Writing ROS 2 bags (mcap or sqlite3) with ``rosbags``, and building the messages we write.

Used by the synthetic scene generator and by tests that need bags with particular defects.
Message classes come from the rosbags Humble typestore and carry ROS's field names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from langgs_ros.errors import InputError
from langgs_ros.geometry import matrix_to_quat_xyzw

__all__ = ["BagWriter", "Storage"]

Storage = Literal["mcap", "sqlite3"]


def _latched_qos() -> Any:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 100, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


class BagWriter:
    """``with BagWriter(path) as bag: bag.write(topic, msg, stamp_ns)``; creates connections lazily."""

    LATCHED_TOPICS = ("/tf_static", "/scene/labels")

    def __init__(self, path: str | Path, storage: Storage = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        if storage not in ("mcap", "sqlite3"):
            raise InputError(f"unknown bag storage '{storage}' (mcap or sqlite3)")
        self.path = Path(path)
        if self.path.exists():
            raise InputError(f"{self.path} exists already; choose a new output directory")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.typestore = get_typestore(Stores.ROS2_HUMBLE)
        # metadata version 8 keeps each topic's QoS as a YAML string, which Humble's rosbag2 (its
        # reader knows version 5) still parses; version 9's list of profiles stops `ros2 bag play` there
        self._writer = Writer(self.path, version=8, storage_plugin=plugin)
        self._connections: dict[str, Any] = {}
        self.types = self.typestore.types

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - closing after a failure (full disk) must not mask it
            if exc_type is None:
                raise
            return
        if exc_type is None:
            from langgs_ros.io.mcap_check import add_chunk_crcs

            for mcap in self.path.glob("*.mcap"):  # chunk CRCs, as ros2 bag record writes them
                add_chunk_crcs(mcap)

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise ``msg`` (a typestore message) to ``topic`` at log time ``stamp_ns``."""
        msgtype = msg.__msgtype__
        conn = self._connections.get(topic)
        if conn is None:
            qos = [_latched_qos()] if topic in self.LATCHED_TOPICS else []
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore, offered_qos_profiles=qos)
            self._connections[topic] = conn
        self._writer.write(conn, stamp_ns, self.typestore.serialize_cdr(msg, msgtype))

    # -- message builders -------------------------------------------------------------------
    def header(self, stamp_ns: int, frame_id: str) -> Any:
        T = self.types
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
            frame_id=frame_id)

    def image(self, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
        """sensor_msgs/Image of a [H, W] or [H, W, C] array (little endian)."""
        arr = np.ascontiguousarray(array)
        h, w = arr.shape[:2]
        return self.types["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
            step=int(arr.strides[0]), data=arr.reshape(-1).view(np.uint8))

    def compressed_image(self, rgb: np.ndarray, fmt: str, stamp_ns: int, frame_id: str) -> Any:
        """sensor_msgs/CompressedImage of an RGB image encoded as ``jpeg`` or ``png``."""
        ok, buf = cv2.imencode("." + ("jpg" if fmt == "jpeg" else fmt), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        return self.types["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp_ns, frame_id), format=fmt, data=buf.reshape(-1))

    def compressed_depth(self, depth: np.ndarray, encoding: str, codec: str, stamp_ns: int, frame_id: str) -> Any:
        """sensor_msgs/CompressedImage of a depth image (32FC1 metres or 16UC1 millimetres) as
        image_transport's compressedDepth publisher writes it (``codec`` png or rvl)."""
        from langgs_ros.io.depth_codec import encode_compressed_depth

        fmt, data = encode_compressed_depth(depth, encoding, codec)
        return self.types["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp_ns, frame_id), format=fmt, data=np.frombuffer(data, np.uint8))

    def camera_info(self, K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str,  # noqa: N803
                    D: np.ndarray | None = None, model: str = "plumb_bob") -> Any:  # noqa: N803
        """sensor_msgs/CameraInfo with camera matrix K and distortion D (zeros by default)."""
        T = self.types
        P = np.zeros((3, 4))
        P[:, :3] = K
        D = np.zeros(5) if D is None else np.asarray(D, np.float64)
        return T["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, frame_id), height=height, width=width, distortion_model=model,
            d=D, k=np.asarray(K, np.float64).reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1),
            binning_x=0, binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    def transform(self, parent: str, child: str, T_parent_child: np.ndarray, stamp_ns: int) -> Any:  # noqa: N803
        """geometry_msgs/TransformStamped of a 4x4 transform."""
        Ty = self.types
        q = matrix_to_quat_xyzw(T_parent_child[:3, :3])
        t = T_parent_child[:3, 3]
        return Ty["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp_ns, parent), child_frame_id=child,
            transform=Ty["geometry_msgs/msg/Transform"](
                translation=Ty["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
                rotation=Ty["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))

    def tf_message(self, transforms: list[Any]) -> Any:
        """tf2_msgs/TFMessage of TransformStamped messages."""
        return self.types["tf2_msgs/msg/TFMessage"](transforms=transforms)

    def pose_stamped(self, T: np.ndarray, stamp_ns: int, frame_id: str) -> Any:  # noqa: N803
        """geometry_msgs/PoseStamped of a 4x4 pose in ``frame_id``."""
        Ty = self.types
        q = matrix_to_quat_xyzw(T[:3, :3])
        return Ty["geometry_msgs/msg/PoseStamped"](
            header=self.header(stamp_ns, frame_id),
            pose=Ty["geometry_msgs/msg/Pose"](
                position=Ty["geometry_msgs/msg/Point"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Ty["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))

    def path_message(self, poses: list[np.ndarray], stamps_ns: list[int], stamp_ns: int, frame_id: str) -> Any:
        """nav_msgs/Path of 4x4 poses in ``frame_id``, each stamped, the path itself at ``stamp_ns``."""
        return self.types["nav_msgs/msg/Path"](
            header=self.header(stamp_ns, frame_id),
            poses=[self.pose_stamped(T, s, frame_id) for T, s in zip(poses, stamps_ns)])

    def string(self, text: str) -> Any:
        """std_msgs/String."""
        return self.types["std_msgs/msg/String"](data=text)
