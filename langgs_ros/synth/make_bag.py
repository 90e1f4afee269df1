"""Render the synthetic scene along a robot trajectory and write it as a ROS 2 bag.

Topics (defaults of :class:`~langgs_ros.config.InputConfig`): ``/camera/color/image_raw`` (rgb8),
``/camera/aligned_depth_to_color/image_raw`` (32FC1, exact depth along the optical axis, metres),
``/camera/color/camera_info``, ``/camera/instances`` (16UC1, 0 = background), ``/scene/labels``
(JSON, once), ``/tf`` (map->odom at 5 Hz, odom->base_link at 50 Hz, stamps offset from the images so
poses must be interpolated) and ``/tf_static`` (base_link->camera_link->camera_color_optical_frame);
with ``drift``, odometry drifts and ``/pose_graph`` (nav_msgs/Path) corrects it at the end; with
``relocalize``, map->odom is wrong until the middle frame and then jumps to the truth.
A sidecar ``ground_truth.json`` holds each object's label, box and observed surface points (one real
point per 1 cm voxel). With ``rooms`` > 1 the scene is a building of that many rooms
(:mod:`langgs_ros.synth.building`), each object's ground truth names its room, and ``frames`` is
the number of images of each room's loop (the transits between rooms add theirs).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from langgs_ros.errors import InputError, OutputError
from langgs_ros.geometry import make_transform
from langgs_ros.io.bag_writer import BagWriter, Storage
from langgs_ros.io.output_paths import atomic_write, check_output_dir, os_reason
from langgs_ros.synth.building import MAX_ROOMS, BuildingTrajectory, building_scene, room_of_instance
from langgs_ros.synth.scene import Scene, default_scene
from langgs_ros.types import CameraIntrinsics

__all__ = ["SynthSpec", "SynthOutput", "make_synthetic_bag", "camera_intrinsics", "robot_pose",
           "T_BASE_CAMLINK", "T_CAMLINK_OPTICAL", "T_MAP_ODOM", "OPTICAL_FRAME", "POSE_GRAPH_TOPIC",
           "DRIFT_AT_END", "odometry_drift"]

OPTICAL_FRAME = "camera_color_optical_frame"
T_MAP_ODOM = make_transform(
    np.array([[np.cos(0.05), -np.sin(0.05), 0], [np.sin(0.05), np.cos(0.05), 0], [0, 0, 1]]), [0.2, -0.1, 0.0])
_PITCH = np.deg2rad(22.0)
T_BASE_CAMLINK = make_transform(
    np.array([[np.cos(_PITCH), 0, np.sin(_PITCH)], [0, 1, 0], [-np.sin(_PITCH), 0, np.cos(_PITCH)]]), [0.1, 0.0, 1.3])
T_CAMLINK_OPTICAL = make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float), [0.0, 0.0, 0.0])
_T0_NS = 1_700_000_000_000_000_000
_IMAGE_PERIOD_NS = 100_000_000
_TF_PERIOD_NS = 20_000_000
_IMAGE_OFFSET_NS = 3_700_000  # images fall between TF samples
POSE_GRAPH_TOPIC = "/pose_graph"
DRIFT_AT_END = (0.25, -0.15, 4.0)
"""Odometry error at the end of a ``drift`` sequence: x, y (m) and yaw (degrees) in ``map``."""


def odometry_drift(fraction: float) -> np.ndarray:
    """T_believed_true: the odometry error after ``fraction`` (0..1) of a drifting sequence."""
    x, y, yaw_deg = (fraction * v for v in DRIFT_AT_END)
    yaw = np.deg2rad(yaw_deg)
    return make_transform(np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]),
                          [x, y, 0.0])


@dataclass
class SynthSpec:
    """What to render."""

    seed: int = 0
    width: int = 640
    height: int = 480
    frames: int = 72
    storage: Storage = "mcap"
    compressed: bool = False
    """Color only as ``/camera/color/image_raw/compressed`` (PNG), as a compressed-only camera driver."""
    move: str = ""
    """Label of an object moved at the middle frame (empty: a static scene)."""
    move_to: tuple[float, float] = (-0.45, 0.15)
    """Where ``move`` goes: x, y of its new centre in ``map`` (m); by default a free spot on the table."""
    drift: bool = False
    """Odometry drifts: TF's odom->base_link carries a pose that drifts linearly to
    :data:`DRIFT_AT_END` over the sequence, and after the last image a ``nav_msgs/Path`` on
    :data:`POSE_GRAPH_TOPIC` gives the true base poses at every image stamp (a SLAM correction)."""
    relocalize: bool = False
    """The localizer starts wrong: TF's map->odom is off by :data:`DRIFT_AT_END` until the middle
    frame, then jumps to the true one (odometry itself is exact), as AMCL converging late."""
    rooms: int = 1
    """Rooms of the building (1: the bundled room); ``frames`` images per room loop."""
    compressed_depth: str = ""
    """Depth only as ``<depth topic>/compressedDepth`` (image_transport's format, codec ``png`` or
    ``rvl``), as a robot recording through image_transport; empty: raw 32FC1 images."""


@dataclass
class SynthOutput:
    """Paths written."""

    bag: Path
    ground_truth: Path


def camera_intrinsics(width: int, height: int) -> CameraIntrinsics:
    """Intrinsics of the synthetic camera (62 degree horizontal field of view)."""
    f = 525.0 * width / 640.0
    return CameraIntrinsics(width=width, height=height, fx=f, fy=f, cx=(width - 1) / 2, cy=(height - 1) / 2)


def robot_pose(t_s: float, duration_s: float, seed: int) -> np.ndarray:
    """T_map_base_link at time ``t_s`` of a loop around the table (a continuous function of time)."""
    rng = np.random.default_rng(seed)
    phase, wobble = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.15)
    theta = phase + 2 * np.pi * t_s / duration_s
    radius = 1.35 + wobble * np.sin(3 * theta)
    pos = np.array([radius * np.cos(theta), radius * np.sin(theta), 0.0])
    yaw = theta + np.pi + 0.3 * np.sin(2 * theta)  # face the centre, panning left and right
    R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    return make_transform(R, pos)


def _render(scene: Scene, K: CameraIntrinsics, T_map_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: N803
    u, v = np.meshgrid(np.arange(K.width), np.arange(K.height))
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u, dtype=float)], axis=-1).reshape(-1, 3)
    norm = np.linalg.norm(rays, axis=1)
    dirs = (rays / norm[:, None]) @ T_map_cam[:3, :3].T
    origins = np.broadcast_to(T_map_cam[:3, 3], dirs.shape)
    hits = scene.raycast(origins, dirs)
    depth = (hits.t / norm).astype(np.float32)  # distance along the optical axis
    depth[~np.isfinite(depth)] = np.nan
    rgb = (hits.color * 255).round().astype(np.uint8)
    return (rgb.reshape(K.height, K.width, 3), depth.reshape(K.height, K.width),
            hits.instance.reshape(K.height, K.width))


class _Trajectory:
    """T_map_base_link over time: the single room's loop, or a building's tour."""

    def __init__(self, spec: SynthSpec) -> None:
        loop_s = spec.frames * _IMAGE_PERIOD_NS / 1e9
        self.seed = spec.seed
        self.building = BuildingTrajectory(spec.rooms, loop_s, spec.seed) if spec.rooms > 1 else None
        self.duration_s = self.building.duration_s if self.building is not None else loop_s
        self.frames = int(round(self.duration_s * 1e9 / _IMAGE_PERIOD_NS)) if self.building is not None else spec.frames

    def pose(self, t_s: float) -> np.ndarray:
        if self.building is not None:
            return self.building.pose(t_s)
        return robot_pose(t_s, self.duration_s, self.seed)


def make_synthetic_bag(out_dir: str | Path, spec: SynthSpec | None = None, scene: Scene | None = None,
                       progress: Callable[[int, int], None] | None = None) -> SynthOutput:
    """Render the frames of ``spec`` and write ``out_dir/synth_bag`` and ``out_dir/ground_truth.json``."""
    spec = spec or SynthSpec()
    if spec.frames < 1 or spec.width < 16 or spec.height < 16:
        raise InputError("synthetic bag needs at least 1 frame of at least 16x16 pixels")
    if spec.compressed_depth not in ("", "png", "rvl"):
        raise InputError(f"compressedDepth codec must be png or rvl, got '{spec.compressed_depth}'")
    if not 1 <= spec.rooms <= MAX_ROOMS:
        raise InputError(f"--rooms must be 1 to {MAX_ROOMS}, got {spec.rooms}")
    if spec.rooms > 1 and spec.move:
        raise InputError("--move needs the single room (--rooms 1): every room of a building has its own "
                         f"'{spec.move}'")
    scene = scene or building_scene(spec.rooms, spec.seed)
    if spec.relocalize and spec.drift:
        raise InputError("--relocalize and --drift cannot be combined: one bag, one kind of pose error")
    if spec.move and spec.move not in scene.labels.values():
        raise InputError(f"--move: no object '{spec.move}' in the scene (objects: {', '.join(scene.labels.values())})")
    out = check_output_dir(out_dir)
    bag_path = out / "synth_bag"
    if bag_path.exists():
        raise InputError(f"{bag_path} exists already; choose a new output directory")
    try:
        return _write_synthetic_bag(out, bag_path, spec, scene, progress)
    except BaseException as exc:  # a full disk or Ctrl-C: remove what was half written
        shutil.rmtree(bag_path, ignore_errors=True)
        (out / "ground_truth.json").unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write the synthetic bag in {out}: {os_reason(exc)}; "
                              "the partial bag was removed") from None
        if isinstance(exc, OutputError):
            raise OutputError(f"{exc}; the partial bag was removed") from None
        raise


def _write_synthetic_bag(out: Path, bag_path: Path, spec: SynthSpec, scene: Scene,
                         progress: Callable[[int, int], None] | None) -> SynthOutput:
    K = camera_intrinsics(spec.width, spec.height)
    trajectory = _Trajectory(spec)
    n_frames = trajectory.frames
    duration = trajectory.duration_s
    T_base_optical = T_BASE_CAMLINK @ T_CAMLINK_OPTICAL
    surface: dict[int, dict[tuple[int, int, int], tuple[float, float, float]]] = {o.id: {} for o in scene.objects}
    after, moved, move_frame = scene, None, n_frames // 2
    if spec.move:
        after, moved = scene.with_object_moved(spec.move, spec.move_to)
        before_surface: dict[tuple[int, int, int], tuple[float, float, float]] = {}
    with BagWriter(bag_path, storage=spec.storage) as bag:
        t_start = _T0_NS - 2 * _TF_PERIOD_NS
        bag.write("/scene/labels", bag.string(json.dumps({str(k): v for k, v in scene.labels.items()})), t_start)
        static = [bag.transform("base_link", "camera_link", T_BASE_CAMLINK, t_start),
                  bag.transform("camera_link", OPTICAL_FRAME, T_CAMLINK_OPTICAL, t_start)]
        bag.write("/tf_static", bag.tf_message(static), t_start)
        image_times = [_T0_NS + i * _IMAGE_PERIOD_NS + _IMAGE_OFFSET_NS for i in range(n_frames)]
        image_index = {stamp: i for i, stamp in enumerate(image_times)}
        tf_times = range(t_start, image_times[-1] + 3 * _TF_PERIOD_NS, _TF_PERIOD_NS)
        events = [(t, "tf") for t in tf_times] + [(t, "image") for t in image_times]
        for n_done, (stamp, kind) in enumerate(sorted(events)):
            t_s = (stamp - _T0_NS) / 1e9
            T_map_base = trajectory.pose(t_s)
            if kind == "tf":
                believed = odometry_drift(min(1.0, max(0.0, t_s / duration))) @ T_map_base if spec.drift else T_map_base
                tfs = [bag.transform("odom", "base_link", np.linalg.inv(T_MAP_ODOM) @ believed, stamp)]
                if (stamp - t_start) % (10 * _TF_PERIOD_NS) == 0:
                    lost = spec.relocalize and stamp < image_times[move_frame]
                    tfs.append(bag.transform("map", "odom", odometry_drift(1.0) @ T_MAP_ODOM if lost else T_MAP_ODOM,
                                             stamp))
                bag.write("/tf", bag.tf_message(tfs), stamp)
                continue
            T_map_cam = T_map_base @ T_base_optical
            index = image_index[stamp]
            moved_now = moved is not None and index >= move_frame
            if moved is not None and index == move_frame:  # the object's surface seen so far is its old place
                before_surface, surface[moved.id] = surface[moved.id], {}
            rgb, depth, inst = _render(after if moved_now else scene, K, T_map_cam)
            bag.write("/camera/color/camera_info", bag.camera_info(K.K, K.width, K.height, stamp, OPTICAL_FRAME), stamp)
            if spec.compressed:
                bag.write("/camera/color/image_raw/compressed", bag.compressed_image(rgb, "png", stamp, OPTICAL_FRAME),
                          stamp)
            else:
                bag.write("/camera/color/image_raw", bag.image(rgb, "rgb8", stamp, OPTICAL_FRAME), stamp)
            if spec.compressed_depth:
                bag.write("/camera/aligned_depth_to_color/image_raw/compressedDepth",
                          bag.compressed_depth(depth, "32FC1", spec.compressed_depth, stamp, OPTICAL_FRAME), stamp)
            else:
                bag.write("/camera/aligned_depth_to_color/image_raw", bag.image(depth, "32FC1", stamp, OPTICAL_FRAME),
                          stamp)
            bag.write("/camera/instances", bag.image(inst, "16UC1", stamp, OPTICAL_FRAME), stamp)
            _accumulate_surface(surface, depth, inst, K, T_map_cam)
            if progress:
                progress(index + 1, n_frames)
        if spec.drift:  # SLAM's corrected trajectory, after the last image
            true = [trajectory.pose((s - _T0_NS) / 1e9) for s in image_times]
            end = image_times[-1] + 5 * _TF_PERIOD_NS
            bag.write(POSE_GRAPH_TOPIC, bag.path_message(true, image_times, end, "map"), end)
    if moved is not None and move_frame >= n_frames:
        before_surface = surface[moved.id]
    gt = {
        "frame_id": "map",
        "room": {"lo": list(scene.room_lo), "hi": list(scene.room_hi)},
        "rooms": spec.rooms,
        "objects": [
            {"id": o.id, "label": o.label, "room": room_of_instance(o.id) if spec.rooms > 1 else 0,
             "bbox_min": o.bounds()[0].round(4).tolist(), "bbox_max": o.bounds()[1].round(4).tolist(),
             "surface_points": np.round(list(surface[o.id].values()), 4).tolist()}
            for o in after.objects
        ],
    }
    if spec.relocalize:
        gt["relocalize"] = {"frame": move_frame, "stamp_ns": image_times[min(move_frame, n_frames - 1)],
                            "error_before": {"x_m": DRIFT_AT_END[0], "y_m": DRIFT_AT_END[1], "yaw_deg": DRIFT_AT_END[2]}}
    if spec.drift:
        gt["drift"] = {"at_end": {"x_m": DRIFT_AT_END[0], "y_m": DRIFT_AT_END[1], "yaw_deg": DRIFT_AT_END[2]},
                       "pose_graph_topic": POSE_GRAPH_TOPIC}
    if moved is not None:  # the objects above are where they are at the end; this one was elsewhere before
        old = next(o for o in scene.objects if o.id == moved.id)
        gt["moved"] = {"id": moved.id, "label": moved.label, "frame": move_frame,
                       "stamp_ns": image_times[min(move_frame, n_frames - 1)],
                       "before": {"bbox_min": old.bounds()[0].round(4).tolist(),
                                  "bbox_max": old.bounds()[1].round(4).tolist(),
                                  "surface_points": np.round(list(before_surface.values()), 4).tolist()}}
    gt_path = atomic_write(out / "ground_truth.json", lambda fh: fh.write(json.dumps(gt).encode()),
                           what="ground truth")
    return SynthOutput(bag=bag_path, ground_truth=gt_path)


def _accumulate_surface(surface: dict[int, dict[tuple[int, int, int], tuple[float, float, float]]],
                        depth: np.ndarray, inst: np.ndarray, K: CameraIntrinsics, T_map_cam: np.ndarray) -> None:  # noqa: N803
    """Record one observed surface point per 1 cm voxel of every object visible in this view."""
    v, u = np.nonzero(inst > 0)
    z = depth[v, u]
    pts = np.stack([(u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z, z], axis=1) @ T_map_cam[:3, :3].T + T_map_cam[:3, 3]
    keys = np.floor(pts / 0.01).astype(np.int64)
    ids = inst[v, u]
    for obj_id in np.unique(ids):
        sel = ids == obj_id
        uniq, first = np.unique(keys[sel], axis=0, return_index=True)
        known = surface[int(obj_id)]
        for key, point in zip(map(tuple, uniq.tolist()), pts[sel][first].tolist()):
            known.setdefault(key, tuple(point))
