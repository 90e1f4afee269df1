"""Core types -> ROS messages (and PointCloud2 -> numpy), plain Python over message fields.

Every builder takes a :class:`~langgs_ros.ros.messages.MessageFactory`, so the same code makes
rclpy messages on a robot and rosbags messages in tests. Inputs (images, CameraInfo, TF, poses)
are decoded by :mod:`langgs_ros.io.image_codec` and :mod:`langgs_ros.io.tf_buffer`, which read
fields only and so accept rclpy messages too. Coordinates are in the map's fixed frame (REP-105),
metres.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from langgs_ros.config import InputConfig
from langgs_ros.errors import InputError
from langgs_ros.geometry import invert_transform, make_transform, matrix_to_quat_xyzw, quat_xyzw_to_matrix
from langgs_ros.io.frame_builder import build_frame
from langgs_ros.io.image_codec import camera_model_from_info, image_array
from langgs_ros.query.engine import ObjectResult, QueryResult
from langgs_ros.query.navigation import NavigationGrid
from langgs_ros.ros.messages import MessageFactory
from langgs_ros.semantics.backend import LEVELS, Segmentation
from langgs_ros.types import CameraIntrinsics, Frame

__all__ = ["header", "pointcloud2", "pointcloud2_to_arrays", "pose_stamped", "object_mask",
           "query_response", "marker_array", "mono8_image", "occupancy_grid", "pack_rgb", "camera_info",
           "semantic_frame", "semantic_frame_to_core", "diagnostics"]

# sensor_msgs/PointField datatypes
_FLOAT32 = 7
_PF_DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32, 6: np.uint32, 7: np.float32,
              8: np.float64}


def time_msg(f: MessageFactory, stamp_ns: int) -> Any:
    """builtin_interfaces/Time of ``stamp_ns`` nanoseconds."""
    return f.make("builtin_interfaces/msg/Time", sec=int(stamp_ns // 1_000_000_000),
                  nanosec=int(stamp_ns % 1_000_000_000))


def header(f: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header at ``stamp_ns`` nanoseconds."""
    return f.make("std_msgs/msg/Header", stamp=time_msg(f, stamp_ns), frame_id=frame_id)


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """[N, 3] uint8 RGB -> [N] float32 holding 0x00RRGGBB bits (PCL/RViz "rgb" field)."""
    c = colors.astype(np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)


def pointcloud2(f: MessageFactory, hdr: Any, xyz: np.ndarray, rgb: np.ndarray | None = None,
                relevance: np.ndarray | None = None) -> Any:
    """Unorganised sensor_msgs/PointCloud2 with float32 x, y, z [, rgb (packed)] [, relevance]."""
    columns = [("x", xyz[:, 0]), ("y", xyz[:, 1]), ("z", xyz[:, 2])]
    if rgb is not None:
        columns.append(("rgb", pack_rgb(rgb)))
    if relevance is not None:
        columns.append(("relevance", relevance))
    n = len(xyz)
    table = np.empty((n, len(columns)), np.float32)
    for i, (_, values) in enumerate(columns):
        table[:, i] = values
    fields = [f.make("sensor_msgs/msg/PointField", name=name, offset=4 * i, datatype=_FLOAT32, count=1)
              for i, (name, _) in enumerate(columns)]
    step = 4 * len(columns)
    return f.make("sensor_msgs/msg/PointCloud2", header=hdr, height=1, width=n, fields=fields,
                  is_bigendian=False, point_step=step, row_step=step * n,
                  data=np.frombuffer(table.astype("<f4").tobytes(), np.uint8), is_dense=True)


def pointcloud2_to_arrays(msg: Any) -> dict[str, np.ndarray]:
    """Each field of a little-endian PointCloud2 as an [N] array (``rgb`` unpacked to [N, 3] uint8)."""
    if msg.is_bigendian:
        raise ValueError("big-endian PointCloud2 is not supported")
    n = int(msg.width) * int(msg.height)
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    if raw.size < n * int(msg.point_step):
        raise ValueError(f"PointCloud2 holds {raw.size} bytes, expected {n * int(msg.point_step)}")
    rows = raw[: n * int(msg.point_step)].reshape(n, int(msg.point_step))
    out = {}
    for fld in msg.fields:
        dtype = np.dtype(_PF_DTYPES[int(fld.datatype)]).newbyteorder("<")
        cols = rows[:, int(fld.offset) : int(fld.offset) + dtype.itemsize]
        values = np.ascontiguousarray(cols).view(dtype)[:, 0]
        if fld.name == "rgb":
            bits = values.view(np.uint32)
            values = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.uint8)
        out[str(fld.name)] = values
    return out


def pose_stamped(f: MessageFactory, hdr: Any, position: np.ndarray, quat_xyzw: np.ndarray) -> Any:
    """geometry_msgs/PoseStamped."""
    pose = f.make("geometry_msgs/msg/Pose",
                  position=f.make("geometry_msgs/msg/Point", x=float(position[0]), y=float(position[1]),
                                  z=float(position[2])),
                  orientation=f.make("geometry_msgs/msg/Quaternion", x=float(quat_xyzw[0]), y=float(quat_xyzw[1]),
                                     z=float(quat_xyzw[2]), w=float(quat_xyzw[3])))
    return f.make("geometry_msgs/msg/PoseStamped", header=hdr, pose=pose)


def _vector(f: MessageFactory, kind: str, v: np.ndarray) -> Any:
    return f.make(f"geometry_msgs/msg/{kind}", x=float(v[0]), y=float(v[1]), z=float(v[2]))


def object_mask(f: MessageFactory, hdr: Any, obj: ObjectResult, label: str, colors: np.ndarray,
                relevance: np.ndarray, max_points: int) -> Any:
    """langgs_ros/ObjectMask of one instance; at most ``max_points`` points, evenly subsampled.

    ``colors`` [M, 3] uint8 and ``relevance`` [M] belong to ``obj.points``.
    """
    step = max(1, int(np.ceil(len(obj.points) / max(1, max_points))))
    cloud = pointcloud2(f, hdr, obj.points[::step], colors[::step], relevance[::step])
    seen = obj.seen
    return f.make("langgs_ros/msg/ObjectMask", label=label, score=float(obj.score),
                  centroid=_vector(f, "Point", obj.centroid), bbox_min=_vector(f, "Vector3", obj.bbox_min),
                  bbox_max=_vector(f, "Vector3", obj.bbox_max), points=cloud,
                  first_seen=time_msg(f, seen.first_ns if seen is not None and seen.first_ns is not None else 0),
                  last_seen=time_msg(f, seen.last_ns if seen is not None else 0),
                  age_s=float(obj.age_s) if obj.age_s is not None else -1.0)


def query_response(f: MessageFactory, result: QueryResult, stamp_ns: int, relevance: list[np.ndarray],
                   max_points: int) -> Any:
    """langgs_ros/srv/Query response of an answer; ``relevance[i]`` is the relevancy of
    ``result.objects[i]``'s points."""
    hdr = header(f, stamp_ns, result.frame_id)
    objects = [object_mask(f, hdr, o, result.query, o.colors, rel, max_points)
               for o, rel in zip(result.objects, relevance)]
    goal = result.goal_pose
    goal_msg = (pose_stamped(f, hdr, goal.position, goal.orientation_xyzw) if goal is not None
                else f.make("geometry_msgs/msg/PoseStamped", header=hdr))
    path = goal.path_length if goal is not None and np.isfinite(goal.path_length) else 0.0
    return f.make("langgs_ros/srv/Query_Response", success=result.answered, message=result.message, objects=objects,
                  has_goal=goal is not None, goal_pose=goal_msg, goal_object=int(result.goal_object),
                  path_length_m=float(path))


def marker_array(f: MessageFactory, hdr: Any, result: QueryResult, namespace: str = "query") -> Any:
    """visualization_msgs/MarkerArray: a DELETEALL, then per object a translucent box and a label."""
    markers = [f.make("visualization_msgs/msg/Marker", header=hdr, ns=namespace, id=0, action=3)]
    identity = f.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0)
    for i, obj in enumerate(result.objects):
        centre = (obj.bbox_min + obj.bbox_max) / 2
        size = np.maximum(obj.bbox_max - obj.bbox_min, 0.01)
        hue = 1.0 if i == 0 else 0.4  # the best object stands out
        box = f.make("visualization_msgs/msg/Marker", header=hdr, ns=namespace, id=2 * i + 1, type=1, action=0,
                     pose=f.make("geometry_msgs/msg/Pose", position=_vector(f, "Point", centre), orientation=identity),
                     scale=_vector(f, "Vector3", size),
                     color=f.make("std_msgs/msg/ColorRGBA", r=hue, g=0.8 * (1 - hue) + 0.2, b=0.1, a=0.35))
        top = centre + np.array([0.0, 0.0, size[2] / 2 + 0.08])
        text = f.make("visualization_msgs/msg/Marker", header=hdr, ns=namespace, id=2 * i + 2, type=9, action=0,
                      pose=f.make("geometry_msgs/msg/Pose", position=_vector(f, "Point", top), orientation=identity),
                      scale=f.make("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=0.08),
                      color=f.make("std_msgs/msg/ColorRGBA", r=1.0, g=1.0, b=1.0, a=1.0),
                      text=f"{result.query} #{i + 1} ({obj.score:.2f})")
        markers += [box, text]
    return f.make("visualization_msgs/msg/MarkerArray", markers=markers)


def mono8_image(f: MessageFactory, hdr: Any, mask: np.ndarray) -> Any:
    """sensor_msgs/Image mono8 of a bool mask [H, W] (255 = inside)."""
    data = np.ascontiguousarray(mask, dtype=np.uint8) * 255
    h, w = data.shape
    return f.make("sensor_msgs/msg/Image", header=hdr, height=h, width=w, encoding="mono8", is_bigendian=0,
                  step=w, data=data.reshape(-1))


def occupancy_grid(f: MessageFactory, hdr: Any, grid: NavigationGrid) -> Any:
    """nav_msgs/OccupancyGrid of mapped obstacles: 100 obstacle, 0 observed free floor, -1 unknown.

    Grid cell (i, j) of :class:`NavigationGrid` is x-major; OccupancyGrid rows run along y.
    """
    cells = np.full(grid.obstacle.shape, -1, np.int8)
    cells[grid.observed_free] = 0
    cells[grid.obstacle] = 100
    nx, ny = cells.shape
    origin = np.array([grid.origin[0] - grid.resolution / 2, grid.origin[1] - grid.resolution / 2, grid.floor_z])
    info = f.make("nav_msgs/msg/MapMetaData", map_load_time=hdr.stamp, resolution=float(grid.resolution),
                  width=nx, height=ny,
                  origin=f.make("geometry_msgs/msg/Pose", position=_vector(f, "Point", origin),
                                orientation=f.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0)))
    return f.make("nav_msgs/msg/OccupancyGrid", header=hdr, info=info, data=cells.T.reshape(-1).copy())


def _image(f: MessageFactory, hdr: Any, array: np.ndarray, encoding: str) -> Any:
    """sensor_msgs/Image of a little-endian [H, W] or [H, W, C] array."""
    data = np.ascontiguousarray(array)
    h, w = data.shape[:2]
    return f.make("sensor_msgs/msg/Image", header=hdr, height=h, width=w, encoding=encoding, is_bigendian=0,
                  step=data[0].nbytes if h else 0, data=data.reshape(-1).view(np.uint8))


def camera_info(f: MessageFactory, hdr: Any, K: CameraIntrinsics) -> Any:  # noqa: N803
    """sensor_msgs/CameraInfo of an undistorted pinhole camera (plumb_bob, zero distortion)."""
    k = np.array(K.K, np.float64).reshape(-1)
    p = np.array([[K.fx, 0, K.cx, 0], [0, K.fy, K.cy, 0], [0, 0, 1, 0]], np.float64).reshape(-1)
    return f.make("sensor_msgs/msg/CameraInfo", header=hdr, width=K.width, height=K.height,
                  distortion_model="plumb_bob", d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=p)


def _pose_in(f: MessageFactory, stamp_ns: int, fixed_frame: str, T: np.ndarray | None) -> Any:  # noqa: N803
    """geometry_msgs/PoseStamped of ``T`` [4, 4] in ``fixed_frame``; an empty frame_id when None (unknown)."""
    if T is None:
        return f.make("geometry_msgs/msg/PoseStamped", header=header(f, stamp_ns, ""))
    return pose_stamped(f, header(f, stamp_ns, fixed_frame), T[:3, 3], matrix_to_quat_xyzw(T[:3, :3]))


def _pose_from(msg: Any, fixed_frame: str, name: str) -> np.ndarray | None:
    """T [4, 4] of a PoseStamped in ``fixed_frame``, None where its frame_id is empty (unknown);
    raises InputError when it is in another frame or its orientation is not a rotation."""
    frame_id = str(msg.header.frame_id).lstrip("/")
    if not frame_id:
        return None
    if frame_id != fixed_frame.lstrip("/"):
        raise InputError(f"SemanticFrame {name} is in '{msg.header.frame_id}', the map is in '{fixed_frame}'")
    p, q = msg.pose.position, msg.pose.orientation
    try:
        R = quat_xyzw_to_matrix([q.x, q.y, q.z, q.w])  # noqa: N806
    except ValueError as exc:
        raise InputError(f"SemanticFrame {name}: {exc}") from None
    return make_transform(R, np.array([p.x, p.y, p.z]))


def semantic_frame(f: MessageFactory, frame: Frame, seg: Segmentation, fixed_frame: str) -> Any:
    """langgs_ros/SemanticFrame of a keyframe and its segmentation (``frame`` is undistorted), with
    the base and odometry frames' poses where the frame has them."""
    hdr = header(f, frame.stamp_ns, frame.frame_id)
    pose = _pose_in(f, frame.stamp_ns, fixed_frame, frame.T_world_cam)
    dim = int(seg.embeddings[0].shape[1]) if seg.embeddings else 0
    depth = (_image(f, hdr, frame.depth.astype("<f4"), "32FC1") if frame.depth is not None
             else f.make("sensor_msgs/msg/Image", header=hdr))
    embeddings = np.concatenate([e.reshape(-1, dim) for e in seg.embeddings]).astype("<f4").reshape(-1)
    return f.make("langgs_ros/msg/SemanticFrame", header=hdr,
                  segments=[_image(f, hdr, ids.astype("<i4"), "32SC1") for ids in seg.levels],
                  embedding_dim=dim, segment_counts=np.array([len(e) for e in seg.embeddings], np.uint32),
                  embeddings=embeddings, camera_info=camera_info(f, hdr, frame.intrinsics), camera_pose=pose,
                  base_pose=_pose_in(f, frame.stamp_ns, fixed_frame, frame.T_world_base),
                  odom_pose=_pose_in(f, frame.stamp_ns, fixed_frame, frame.T_world_odom),
                  color=_image(f, hdr, frame.rgb, "rgb8"), depth=depth)


def semantic_frame_to_core(msg: Any, fixed_frame: str, config: InputConfig) -> tuple[Frame, Segmentation]:
    """(frame, segmentation) of a langgs_ros/SemanticFrame; raises InputError on malformed content."""
    T = _pose_from(msg.camera_pose, fixed_frame, "camera pose")  # noqa: N806
    if T is None:
        raise InputError("SemanticFrame camera pose has no frame_id")
    T_world_base = _pose_from(msg.base_pose, fixed_frame, "base pose")  # noqa: N806
    T_world_odom = _pose_from(msg.odom_pose, fixed_frame, "odometry pose")  # noqa: N806
    model = camera_model_from_info(msg.camera_info)
    if model.is_distorted:
        raise InputError("SemanticFrame images must be undistorted (camera_info with zero distortion)")
    depth_msg = msg.depth if int(msg.depth.width) > 0 else None
    T_cam_base = None if T_world_base is None else invert_transform(T) @ T_world_base  # noqa: N806
    frame = build_frame(msg.color, depth_msg, None, model, T, config, T_cam_base=T_cam_base, T_world_odom=T_world_odom)
    if isinstance(frame, str):
        raise InputError(frame)
    dim, counts = int(msg.embedding_dim), [int(c) for c in msg.segment_counts]
    if len(msg.segments) != len(LEVELS) or len(counts) != len(LEVELS):
        raise InputError(f"SemanticFrame needs {len(LEVELS)} segment images and counts, "
                         f"has {len(msg.segments)} and {len(counts)}")
    values = np.asarray(msg.embeddings, np.float32).reshape(-1)
    if dim <= 0 or values.size != dim * sum(counts) or not np.all(np.isfinite(values)):
        raise InputError(f"SemanticFrame embeddings: {values.size} finite values expected {dim} x {sum(counts)}")
    embeddings = np.split(values.reshape(-1, dim), np.cumsum(counts)[:-1])
    levels = []
    for image, n in zip(msg.segments, counts):
        if str(image.encoding) != "32SC1":
            raise InputError(f"SemanticFrame segment images must be 32SC1, not '{image.encoding}'")
        ids = image_array(image, np.int32, 1)[:, :, 0].copy()
        if ids.shape != frame.rgb.shape[:2] or (ids.size and (ids.min() < -1 or ids.max() >= n)):
            raise InputError("SemanticFrame segment image does not match the color image or its segment count")
        levels.append(ids)
    return frame, Segmentation(levels=levels, embeddings=[np.array(e, np.float32) for e in embeddings])


def diagnostics(f: MessageFactory, hdr: Any, name: str, level: int, message: str, values: dict[str, Any]) -> Any:
    """diagnostic_msgs/DiagnosticArray with one status (level 0 OK, 1 WARN, 2 ERROR, 3 STALE)."""
    pairs = [f.make("diagnostic_msgs/msg/KeyValue", key=str(k), value="" if v is None else str(v))
             for k, v in values.items()]
    status = f.make("diagnostic_msgs/msg/DiagnosticStatus", level=np.uint8(level), name=name, message=message,
                    hardware_id="langgs_ros", values=pairs)
    return f.make("diagnostic_msgs/msg/DiagnosticArray", header=hdr, status=[status])
