"""A small offline TF buffer: the chain between two frames, interpolated at a stamp.

Same semantics as tf2's ``lookup_transform(target, source, time)``: the result maps points from
``source`` into ``target``. Translations are interpolated linearly and rotations by slerp between
the two samples that bracket the stamp; a stamp outside a dynamic transform's samples by more than
the tolerance is an extrapolation and fails instead of returning a wrong pose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from langgs_ros.geometry import invert_transform, make_transform

__all__ = ["TransformLookupError", "TransformBuffer", "POSE_CHILD"]

POSE_CHILD = "__pose_child__"
"""Child frame of a PoseStamped pose topic without a configured child: the camera itself."""


class TransformLookupError(LookupError):
    """The transform cannot be computed at the requested stamp (message says why)."""


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quats_xyzw: list[np.ndarray] = field(default_factory=list)
    _sorted: bool = True


class TransformBuffer:
    """Parent/child transforms from /tf and /tf_static, queried by frame names and stamp."""

    def __init__(self, tolerance_ns: int = 50_000_000) -> None:
        self.tolerance_ns = int(tolerance_ns)
        self._edges: dict[str, _Edge] = {}
        self.rejected = 0
        """Samples dropped: non-finite values or a child that changed parent."""
        self.rejected_why: dict[tuple[str, str], str] = {}
        """(parent, child) -> why its samples were dropped (the first reason)."""

    def add(
        self,
        parent: str,
        child: str,
        stamp_ns: int,
        translation: Iterable[float],
        quat_xyzw: Iterable[float],
        static: bool = False,
    ) -> None:
        """Add one sample of T_parent_child (maps child coordinates into parent)."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        t = np.asarray(list(translation), dtype=np.float64)
        q = np.asarray(list(quat_xyzw), dtype=np.float64)
        norm = np.linalg.norm(q)
        if not (np.all(np.isfinite(t)) and np.isfinite(norm) and norm > 1e-6) or parent == child:
            self.rejected += 1
            why = ("a frame its own parent" if parent == child else "non-finite translation" if not np.all(np.isfinite(t))
                   else "a NaN quaternion" if not np.isfinite(norm) else "a zero quaternion")
            self.rejected_why.setdefault((parent, child), why)
            return
        edge = self._edges.get(child)
        if edge is None:
            edge = self._edges[child] = _Edge(parent=parent, static=static)
        if edge.parent != parent:
            self.rejected += 1
            self.rejected_why.setdefault((parent, child), f"'{child}' already has the parent '{edge.parent}'")
            return
        if static:
            edge.static = True
            edge.stamps, edge.translations, edge.quats_xyzw = [stamp_ns], [t], [q / norm]
            return
        if edge.stamps and stamp_ns < edge.stamps[-1]:
            edge._sorted = False
        edge.stamps.append(int(stamp_ns))
        edge.translations.append(t)
        edge.quats_xyzw.append(q / norm)

    def add_message(self, msg: Any, static: bool = False) -> None:
        """Add every TransformStamped of a tf2_msgs/TFMessage (rclpy or rosbags message)."""
        for tf in msg.transforms:
            stamp = int(tf.header.stamp.sec) * 1_000_000_000 + int(tf.header.stamp.nanosec)
            tr, rot = tf.transform.translation, tf.transform.rotation
            self.add(tf.header.frame_id, tf.child_frame_id, stamp,
                     (tr.x, tr.y, tr.z), (rot.x, rot.y, rot.z, rot.w), static=static)

    def add_pose_message(self, msg: Any, child_frame: str = "") -> str:
        """Add a geometry_msgs/PoseStamped or nav_msgs/Odometry as T_header.frame_id_child.

        The child is ``child_frame``, else the Odometry's ``child_frame_id``, else
        :data:`POSE_CHILD` (a PoseStamped of the camera itself). Returns the child used.
        """
        pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
        child = child_frame or str(getattr(msg, "child_frame_id", "")) or POSE_CHILD
        p, q = pose.position, pose.orientation
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        self.add(msg.header.frame_id, child, stamp, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
        return child

    def forget_before(self, stamp_ns: int) -> None:
        """Drop dynamic samples older than ``stamp_ns``, keeping the newest of each transform (a
        long-running node keeps a bounded history)."""
        for edge in self._edges.values():
            if edge.static or not edge.stamps:
                continue
            self._ensure_sorted(edge)
            i = min(int(np.searchsorted(edge.stamps, stamp_ns)), len(edge.stamps) - 1)
            del edge.stamps[:i], edge.translations[:i], edge.quats_xyzw[:i]

    @property
    def frames(self) -> set[str]:
        """All frame names seen."""
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def _ensure_sorted(self, edge: _Edge) -> None:
        if not edge._sorted:
            order = np.argsort(edge.stamps, kind="stable")
            edge.stamps = [edge.stamps[i] for i in order]
            edge.translations = [edge.translations[i] for i in order]
            edge.quats_xyzw = [edge.quats_xyzw[i] for i in order]
            edge._sorted = True

    def _edge_at(self, child: str, edge: _Edge, stamp_ns: int) -> np.ndarray:
        if edge.static:
            return make_transform(Rotation.from_quat(edge.quats_xyzw[0]).as_matrix(), edge.translations[0])
        self._ensure_sorted(edge)
        stamps = edge.stamps
        i = int(np.searchsorted(stamps, stamp_ns))
        if i < len(stamps) and stamps[i] == stamp_ns:
            i0 = i1 = i
        elif 0 < i < len(stamps):
            i0, i1 = i - 1, i
        else:
            nearest = 0 if i == 0 else len(stamps) - 1
            gap = abs(stamps[nearest] - stamp_ns)
            if gap > self.tolerance_ns:
                raise TransformLookupError(
                    f"{edge.parent} -> {child} would need extrapolation by {gap / 1e9:.3f} s "
                    f"(samples span {stamps[0] / 1e9:.3f}..{stamps[-1] / 1e9:.3f} s)"
                )
            i0 = i1 = nearest
        if i0 == i1:
            R = Rotation.from_quat(edge.quats_xyzw[i0]).as_matrix()
            return make_transform(R, edge.translations[i0])
        alpha = (stamp_ns - stamps[i0]) / (stamps[i1] - stamps[i0])
        slerp = Slerp([0.0, 1.0], Rotation.from_quat([edge.quats_xyzw[i0], edge.quats_xyzw[i1]]))
        R = slerp([alpha]).as_matrix()[0]
        t = (1 - alpha) * edge.translations[i0] + alpha * edge.translations[i1]
        return make_transform(R, t)

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            parent = self._edges[chain[-1]].parent
            if parent in chain:
                raise TransformLookupError(f"TF loop through {parent}")
            chain.append(parent)
        return chain

    def _to_ancestor(self, chain: list[str], ancestor: str, stamp_ns: int) -> np.ndarray:
        T = np.eye(4)
        for child in chain[: chain.index(ancestor)]:
            T = self._edge_at(child, self._edges[child], stamp_ns) @ T
        return T

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """4x4 T_target_source at ``stamp_ns``; raises TransformLookupError with the reason."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        known = self.frames
        for name in (target, source):
            if name not in known:
                dropped = [f"{p} -> {c}: {why}" for (p, c), why in self.rejected_why.items() if name in (p, c)]
                raise TransformLookupError(f"frame '{name}' does not appear in TF" + (
                    f" (its samples were rejected: {'; '.join(dropped)})" if dropped else ""))
        source_chain, target_chain = self._chain(source), self._chain(target)
        common = next((f for f in source_chain if f in target_chain), None)
        if common is None:
            raise TransformLookupError(
                f"'{source}' and '{target}' are not connected in TF "
                f"(roots '{source_chain[-1]}' and '{target_chain[-1]}')"
            )
        T_common_source = self._to_ancestor(source_chain, common, stamp_ns)
        T_common_target = self._to_ancestor(target_chain, common, stamp_ns)
        return invert_transform(T_common_target) @ T_common_source
