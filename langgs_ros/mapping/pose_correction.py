"""Pose corrections from SLAM: re-posing keyframes, and the Gaussians anchored to them, rigidly.

A SLAM system (slam_toolbox, rtabmap, cartographer) corrects past poses when it closes a loop and
publishes its trajectory as a ``nav_msgs/Path`` of the robot base frame in the fixed frame. Each
keyframe whose stamp the path covers gets the base pose interpolated at its stamp (translation
linearly, rotation by slerp), composed with the keyframe's camera mount (base -> optical frame, from
TF when it was integrated); a frame the graph covers that arrives after it (it waited in a queue)
is posed by the graph too. The Gaussians a keyframe created (its anchor: ids increase in creation
order, so the anchor follows from the keyframe log) move with the same rigid transform, and so do
their semantics, which are per Gaussian.

A localizer without a graph (AMCL) corrects by moving map -> odom instead: each keyframe keeps
map -> odom at its stamp, and when the current one would move a keyframe's camera by more than a
threshold, the keyframe is re-expressed with it (its pose in odom kept) and its Gaussians follow.
Units: metres, REP-103/105 frames.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from langgs_ros.geometry import invert_transform
from langgs_ros.mapping.block_store import BlockStore, Handles
from langgs_ros.mapping.keyframe_log import KeyframeLog
from langgs_ros.types import Frame

__all__ = ["PoseGraph", "CorrectionStats", "correct_map", "reanchor_map"]


@dataclass
class PoseGraph:
    """Corrected poses of the robot base frame: ``stamps_ns`` [P] (ROS time, increasing) and
    ``T_world_base`` [P, 4, 4] (base frame in the fixed frame)."""

    stamps_ns: np.ndarray
    T_world_base: np.ndarray  # noqa: N815

    @classmethod
    def from_poses(cls, stamps_ns: np.ndarray, T_world_base: np.ndarray) -> PoseGraph:  # noqa: N803
        """Sorted by stamp, duplicates and non-finite or non-rigid poses dropped; raises ValueError
        when fewer than one usable pose is left."""
        stamps = np.asarray(stamps_ns, np.int64)
        T = np.asarray(T_world_base, np.float64).reshape(-1, 4, 4)
        if stamps.shape != (len(T),):
            raise ValueError(f"{stamps.size} stamps for {len(T)} poses")
        R = T[:, :3, :3]
        ok = np.all(np.isfinite(T.reshape(len(T), -1)), axis=1)
        ok[ok] &= np.abs(np.linalg.det(R[ok]) - 1.0) < 1e-3
        order = np.argsort(stamps[ok], kind="stable")
        stamps, T = stamps[ok][order], T[ok][order]
        keep = np.r_[True, np.diff(stamps) > 0] if stamps.size else np.zeros(0, bool)
        if not keep.any():
            raise ValueError("the pose graph holds no usable pose (non-finite or not rigid)")
        return cls(stamps[keep], T[keep])

    def base_poses_at(self, stamps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(covered [M] bool, T_world_base [M, 4, 4]) at ``stamps_ns``: interpolated between the
        graph's poses; a stamp outside the graph's span is not covered (identity returned)."""
        stamps = np.asarray(stamps_ns, np.int64)
        out = np.tile(np.eye(4), (stamps.size, 1, 1))
        lo, hi = self.stamps_ns[0], self.stamps_ns[-1]
        covered = (stamps >= lo) & (stamps <= hi)
        if not covered.any():
            return covered, out
        t = (stamps[covered] - lo).astype(np.float64) / 1e9
        knots = (self.stamps_ns - lo).astype(np.float64) / 1e9
        if knots.size == 1:  # one pose covers exactly its own stamp
            out[covered] = self.T_world_base[0]
            return covered, out
        out[covered, :3, :3] = Slerp(knots, Rotation.from_matrix(self.T_world_base[:, :3, :3]))(t).as_matrix()
        for axis in range(3):
            out[covered, axis, 3] = np.interp(t, knots, self.T_world_base[:, axis, 3])
        return covered, out

    def pose_frame(self, frame: Frame) -> Frame | None:
        """``frame`` posed by the graph where it covers the frame's stamp and the frame has its base
        pose (a frame that waited in a queue while SLAM corrected the past), else None. Its map -> odom
        moves alike, so its pose in odom (what stereo matches in) stays as odometry measured it."""
        if frame.T_world_base is None:
            return None
        covered, T_world_base = self.base_poses_at(np.array([frame.stamp_ns], np.int64))  # noqa: N806
        if not covered[0]:
            return None
        mount = invert_transform(frame.T_world_base) @ frame.T_world_cam
        T_world_cam = T_world_base[0] @ mount  # noqa: N806
        shift = T_world_cam @ invert_transform(frame.T_world_cam)
        odom = None if frame.T_world_odom is None else shift @ frame.T_world_odom
        return dataclasses.replace(frame, T_world_cam=T_world_cam, T_world_base=T_world_base[0], T_world_odom=odom)


@dataclass
class CorrectionStats:
    """What one pose graph changed."""

    keyframes_moved: int
    keyframes_without_mount: int
    """Covered keyframes that could not be re-posed: TF gave no base frame when they were integrated."""
    gaussians_moved: int
    max_shift_m: float
    """Largest displacement of a keyframe's camera (m)."""
    seconds: float
    source: str = "pose graph"
    """What corrected the poses: "pose graph" or "map -> odom jump"."""

    def summary(self) -> str:
        """One line for logs."""
        text = (f"{self.source}: {self.keyframes_moved} keyframe(s) re-posed (camera moved up to {self.max_shift_m:.3f} m), "
                f"{self.gaussians_moved} Gaussians moved in {1000 * self.seconds:.0f} ms")
        if self.keyframes_without_mount:
            text += f"; {self.keyframes_without_mount} keyframe(s) kept: no base frame in TF when integrated"
        return text


def _quat_mul_wxyz(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products a * b of quaternions (w, x, y, z), broadcast over the leading axis."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def correct_map(store: BlockStore, log: KeyframeLog, graph: PoseGraph) -> tuple[CorrectionStats, np.ndarray]:
    """Re-pose every keyframe of ``log`` that ``graph`` covers and move its anchored Gaussians
    with it (in place, in ``store``). A re-posed keyframe's map -> odom is forgotten: the
    graph's pose is not odometry's. Returns the stats and the indices of the keyframes moved."""
    start = time.perf_counter()
    n = len(log)
    covered, T_base = graph.base_poses_at(np.asarray(log.stamps_ns, np.int64)) if n else (np.zeros(0, bool), None)
    has_mount = np.array([m is not None for m in log.mounts], bool) if n else np.zeros(0, bool)
    moved = np.flatnonzero(covered & has_mount)
    new_poses = np.array([T_base[k] @ log.mounts[k] for k in moved]).reshape(-1, 4, 4)
    gaussians, shift = _repose(store, log, moved, new_poses)
    for k in moved:
        log.odom[k] = None
    stats = CorrectionStats(keyframes_moved=int(moved.size), keyframes_without_mount=int(np.sum(covered & ~has_mount)),
                            gaussians_moved=gaussians, max_shift_m=shift, seconds=time.perf_counter() - start)
    return stats, moved


def reanchor_map(store: BlockStore, log: KeyframeLog, T_world_odom: np.ndarray,  # noqa: N803
                 min_shift_m: float) -> tuple[CorrectionStats, np.ndarray]:
    """Re-express the keyframes of ``log`` with the current map -> odom ``T_world_odom`` (odometry
    trusted since each was integrated) where that moves their camera by more than ``min_shift_m``
    (m), and move their anchored Gaussians with them (in place, in ``store``). Keyframes
    without a map -> odom are kept. Returns the stats and the indices of the keyframes moved."""
    start = time.perf_counter()
    known = np.array([T is not None for T in log.odom], bool)
    idx = np.flatnonzero(known)
    moved = np.zeros(0, np.int64)
    new_poses = np.zeros((0, 4, 4))
    if idx.size:
        then = np.stack([log.odom[k] for k in idx])
        poses = np.stack([log.poses[k] for k in idx])
        candidates = np.asarray(T_world_odom, np.float64) @ np.linalg.inv(then) @ poses
        shift = np.linalg.norm(candidates[:, :3, 3] - poses[:, :3, 3], axis=1)
        jumped = shift > min_shift_m
        moved, new_poses = idx[jumped], candidates[jumped]
    gaussians, max_shift = _repose(store, log, moved, new_poses)
    for k in moved:
        log.odom[k] = np.array(T_world_odom, np.float64)
    stats = CorrectionStats(keyframes_moved=int(moved.size), keyframes_without_mount=0, gaussians_moved=gaussians,
                            max_shift_m=max_shift, seconds=time.perf_counter() - start,
                            source="map -> odom jump")
    return stats, moved


def _repose(store: BlockStore, log: KeyframeLog, keyframes: np.ndarray, new_poses: np.ndarray) -> tuple[int, float]:
    """Give ``keyframes`` (increasing indices) their ``new_poses`` [M, 4, 4] T_world_cam and move
    the Gaussians each created by the same rigid transform, block by block (only the blocks that
    hold Gaussians of those keyframes; those on disk are loaded, and go back within the RAM budget).
    Returns (Gaussians moved, largest camera displacement in m)."""
    deltas = np.zeros((len(keyframes), 4, 4))
    shift = 0.0
    for i, (k, new) in enumerate(zip(keyframes, new_poses)):
        deltas[i] = new @ np.linalg.inv(log.poses[k])
        shift = max(shift, float(np.linalg.norm(new[:3, 3] - log.poses[k][:3, 3])))
        log.poses[k] = np.array(new, np.float64)
    gaussians = 0
    if not len(keyframes):
        return gaussians, shift
    wanted = set(np.asarray(keyframes).tolist())
    dq = Rotation.from_matrix(deltas[:, :3, :3]).as_quat()[:, [3, 0, 1, 2]]  # xyzw -> wxyz
    touched_keys = []
    # first every block's Gaussians move in place, then those that left their block change block:
    # a Gaussian is never moved twice
    for blk in [b for b in store.blocks if b.count and b.anchors & wanted]:
        g = store.columns_of(blk)
        # rows are in id order, so each keyframe's anchored Gaussians are one contiguous run
        anchor = log.anchors(g["uid"])
        starts = np.searchsorted(anchor, keyframes, side="left")
        ends = np.searchsorted(anchor, keyframes, side="right")
        means, quats = g["means"].copy(), g["quats"].copy()
        touched = 0
        for D, a, b, q in zip(deltas, starts, ends, dq):
            if a == b:
                continue
            means[a:b] = (means[a:b].astype(np.float64) @ D[:3, :3].T + D[:3, 3]).astype(np.float32)
            rotated = _quat_mul_wxyz(q, quats[a:b].astype(np.float64))
            quats[a:b] = (rotated / np.linalg.norm(rotated, axis=1, keepdims=True)).astype(np.float16)
            touched += int(b - a)
        if touched:
            store.scatter(Handles.of_block(blk), {"means": means, "quats": quats})
            touched_keys.append(blk.key)
            gaussians += touched
        store.enforce_budget()
    store.rebucket(touched_keys)
    store.enforce_budget()
    return gaussians, shift
