"""What a map remembers of its keyframes: pose, stamp, camera mount, the localizer's map -> odom
and the first Gaussian each one created.

A keyframe's index is what the Gaussians' ``last_seen`` field holds (the last keyframe that
confirmed them). Gaussian ids (``uid``) increase in creation order, so the keyframe that created a
Gaussian, its first observation, follows from the first id each keyframe created: no per-Gaussian
field is needed for it, nor for its anchor (the keyframe whose pose a correction moves it with).
Stamps are ROS time in nanoseconds (the image header's stamp); poses are T_world_cam, camera optical
frame to the fixed frame; mounts T_base_cam, optical frame in the robot base frame (TF); odom
T_world_odom, the odometry frame in the fixed frame at the keyframe's stamp (TF); metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["KeyframeLog", "SeenTimes"]


@dataclass(frozen=True)
class SeenTimes:
    """When a set of Gaussians was first and last observed (ROS time, ns); ``first_ns`` is None
    when its oldest Gaussian predates the keyframe log (loaded from a map without times)."""

    first_ns: int | None
    last_ns: int

    def age_s(self, now_ns: int) -> float:
        """Seconds from the last observation to ``now_ns`` (0 if ``now_ns`` is earlier)."""
        return max(0.0, (now_ns - self.last_ns) / 1e9)


@dataclass
class KeyframeLog:
    """Per keyframe, by keyframe index: camera pose, stamp, first created Gaussian id, camera
    mount (None where TF gave no base frame) and map -> odom (None where TF gave no odometry frame,
    or a pose graph has set the pose since).

    ``times_known`` is False for a map saved before stamps were kept (map format 1): its keyframe
    indices cannot be turned into times, and answers carry none.
    """

    poses: list[np.ndarray] = field(default_factory=list)
    stamps_ns: list[int] = field(default_factory=list)
    first_uids: list[int] = field(default_factory=list)
    mounts: list[np.ndarray | None] = field(default_factory=list)
    odom: list[np.ndarray | None] = field(default_factory=list)
    times_known: bool = True
    _first_uids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.poses)

    def append(self, T_world_cam: np.ndarray, stamp_ns: int, first_uid: int,  # noqa: N803
               T_base_cam: np.ndarray | None = None, T_world_odom: np.ndarray | None = None) -> int:  # noqa: N803
        """Record a keyframe; returns its index."""
        self.poses.append(np.array(T_world_cam, dtype=np.float64))
        self.stamps_ns.append(int(stamp_ns))
        self.first_uids.append(int(first_uid))
        self.mounts.append(None if T_base_cam is None else np.array(T_base_cam, dtype=np.float64))
        self.odom.append(None if T_world_odom is None else np.array(T_world_odom, dtype=np.float64))
        return len(self.poses) - 1

    def anchors(self, uids: np.ndarray) -> np.ndarray:
        """Index of the keyframe that created each Gaussian of ``uids`` (int64; -1 before the log)."""
        if len(self._first_uids) != len(self.first_uids):  # the list grew (or was replaced) since
            self._first_uids = np.asarray(self.first_uids, np.int64)
        return np.searchsorted(self._first_uids, np.asarray(uids, np.int64), side="right") - 1

    @property
    def newest_ns(self) -> int | None:
        """Stamp of the newest keyframe (ns), None when there is none or times are unknown."""
        return self.stamps_ns[-1] if self.times_known and self.stamps_ns else None

    def seen(self, uids: np.ndarray, last_seen: np.ndarray) -> SeenTimes | None:
        """First and last observation of the Gaussians with ids ``uids`` and ``last_seen``
        keyframe indices (same length); None if times are unknown (an older map) or the set empty."""
        if not len(last_seen):
            return None
        return self.seen_range(int(np.min(uids)), int(np.max(last_seen)))

    def seen_range(self, oldest_uid: int, last_seen: int) -> SeenTimes | None:
        """First and last observation of a set of Gaussians from its oldest id and its newest
        ``last_seen`` keyframe index; None if times are unknown (an older map)."""
        if not self.times_known or not self.stamps_ns or last_seen < 0:  # -1: seen before the log began
            return None
        stamps = np.asarray(self.stamps_ns, np.int64)
        created = int(self.anchors(np.array([oldest_uid]))[0])  # the oldest Gaussian's keyframe
        return SeenTimes(first_ns=int(stamps[created]) if created >= 0 else None,
                         last_ns=int(stamps[min(last_seen, stamps.size - 1)]))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for saving: ``poses`` [K, 4, 4] float64, ``stamps_ns`` [K] and ``first_uids`` [K]
        int64, ``mounts`` and ``odom`` [K, 4, 4] (NaN: none); all but the poses empty when times
        are unknown."""
        known = self.times_known
        return {"poses": np.asarray(self.poses, np.float64).reshape(-1, 4, 4),
                "stamps_ns": np.asarray(self.stamps_ns if known else [], np.int64),
                "first_uids": np.asarray(self.first_uids if known else [], np.int64),
                "mounts": _stack(self.mounts) if known else np.zeros((0, 4, 4)),
                "odom": _stack(self.odom) if known else np.zeros((0, 4, 4))}

    @classmethod
    def from_arrays(cls, poses: np.ndarray, stamps_ns: np.ndarray | None, first_uids: np.ndarray | None,
                    mounts: np.ndarray | None = None, odom: np.ndarray | None = None) -> KeyframeLog:
        """Rebuild from :meth:`to_arrays`; stamps and ids absent or empty (an older map) mean times
        unknown, absent mounts or odom (older maps) none known.
        Raises ValueError on arrays of the wrong shape or length."""
        poses = np.asarray(poses, np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ValueError(f"keyframe poses have shape {list(poses.shape)}, expected [K, 4, 4]")
        none: list[np.ndarray | None] = [None] * len(poses)
        if stamps_ns is None or first_uids is None or (len(poses) and not np.size(stamps_ns)):
            return cls(poses=list(poses), stamps_ns=[], first_uids=[], mounts=list(none), odom=list(none),
                       times_known=False)
        stamps_ns, first_uids = np.asarray(stamps_ns), np.asarray(first_uids)
        if stamps_ns.shape != (len(poses),) or first_uids.shape != (len(poses),):
            raise ValueError(f"{len(poses)} keyframe poses but {stamps_ns.size} stamps and {first_uids.size} ids")
        if stamps_ns.dtype.kind not in "iu" or first_uids.dtype.kind not in "iu":
            raise ValueError("keyframe stamps and ids must be integers")
        return cls(poses=list(poses), stamps_ns=stamps_ns.astype(np.int64).tolist(),
                   first_uids=first_uids.astype(np.int64).tolist(),
                   mounts=_unstack(mounts, len(poses), "camera mounts"), odom=_unstack(odom, len(poses), "map -> odom"))


def _stack(transforms: list[np.ndarray | None]) -> np.ndarray:
    """[K, 4, 4] float64, NaN where a transform is None."""
    out = np.full((len(transforms), 4, 4), np.nan)
    for k, T in enumerate(transforms):
        if T is not None:
            out[k] = T
    return out


def _unstack(stacked: np.ndarray | None, count: int, what: str) -> list[np.ndarray | None]:
    """Inverse of :func:`_stack` (None: all unknown); raises ValueError on a wrong shape."""
    if stacked is None:
        return [None] * count
    stacked = np.asarray(stacked, np.float64)
    if stacked.shape != (count, 4, 4):
        raise ValueError(f"{count} keyframe poses but {what} of shape {list(stacked.shape)}")
    return [T if np.all(np.isfinite(T)) else None for T in stacked]
