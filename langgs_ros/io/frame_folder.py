"""Frames from a folder in the 7-Scenes / 3DMatch layout.

``frame-XXXXXX.color.png`` (8-bit RGB), ``frame-XXXXXX.depth.png`` (16-bit millimetres, 0 invalid),
``frame-XXXXXX.pose.txt`` (4x4 T_world_cam, optical axes, metres), and a 3x3 intrinsics file
(``*intrinsics*.txt``) in the folder or its parent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from langgs_ros.errors import InputError
from langgs_ros.io.camera_check import intrinsics_problem, pose_problem
from langgs_ros.io.frame_source import SourceStats
from langgs_ros.io.input_paths import is_frame_folder
from langgs_ros.types import CameraIntrinsics, Frame

__all__ = ["FrameFolderReader", "is_frame_folder"]


_NAME = re.compile(r"^(frame-(\d+))\.color\.(png|jpg|jpeg)$", re.IGNORECASE)


def _find_intrinsics(folder: Path) -> Path:
    for directory in (folder, folder.parent):
        found = sorted(directory.glob("*intrinsics*.txt"))
        if found:
            return found[0]
    raise InputError(f"no intrinsics file (*intrinsics*.txt) in {folder} or its parent")


def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        values = np.loadtxt(path, dtype=np.float64).reshape(-1)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path.name}: {exc}") from None
    if values.size != shape[0] * shape[1] or not np.all(np.isfinite(values)):
        raise InputError(f"{path.name} must hold {shape[0]}x{shape[1]} finite numbers")
    return values.reshape(shape)


class FrameFolderReader:
    """Iterate the frames of a 7-Scenes style folder in name order, skipping ``exclude`` ids."""

    def __init__(self, folder: str | Path, *, max_depth_m: float = 6.0, min_depth_m: float = 0.1,
                 depth_scale: float = 0.001, frame_id: str = "camera_optical_frame",
                 frame_rate_hz: float = 30.0, exclude: set[str] | None = None) -> None:
        self.folder = Path(folder)
        if not is_frame_folder(self.folder):
            raise InputError(f"{self.folder} holds no frame-*.color.png images")
        self._intrinsics_path = _find_intrinsics(self.folder)
        self.K = _read_matrix(self._intrinsics_path, (3, 3))
        self.max_depth_m, self.min_depth_m, self.depth_scale = max_depth_m, min_depth_m, depth_scale
        self.frame_id, self.frame_rate_hz = frame_id, frame_rate_hz
        self.exclude = exclude or set()
        self._size: tuple[int, int] | None = None
        self.stats = SourceStats()
        self.labels: dict[int, str] = {}
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._color: dict[str, Path] = {}
        bad: list[str] = []
        for p in self.folder.glob("frame-*.color.*"):
            m = _NAME.match(p.name)
            if m is None:
                bad.append(p.name)
                continue
            self._index[m.group(1)], self._color[m.group(1)] = int(m.group(2)), p
        self.names = sorted(self._index, key=lambda n: (self._index[n], n))
        if bad:
            self.stats.skipped[f"file name not frame-<digits>.color.(png|jpg): {', '.join(sorted(bad)[:3])}"
                               f"{' ...' if len(bad) > 3 else ''}"] += len(bad)
            self.stats.frames_seen += len(bad)
        if not self.names:
            raise InputError(f"no frame in {self.folder} has a name of the form frame-<digits>.color.png "
                             f"(found e.g. {sorted(bad)[0]})")

    def load(self, name: str) -> Frame:
        """Load one frame by its ``frame-XXXXXX`` name; raises InputError if unusable."""
        color_path = self._color[name]
        bgr = cv2.imread(str(color_path), cv2.IMREAD_COLOR)
        depth_raw = cv2.imread(str(self.folder / f"{name}.depth.png"), cv2.IMREAD_UNCHANGED)
        if bgr is None:
            raise InputError(f"{color_path.name} is not a readable image")
        if depth_raw is None or depth_raw.dtype != np.uint16 or depth_raw.ndim != 2:
            raise InputError(f"{name}.depth.png is missing or not a 16-bit single-channel PNG")
        if depth_raw.shape != bgr.shape[:2]:
            raise InputError(f"{name}: depth and color sizes differ")
        pose = _read_matrix(self.folder / f"{name}.pose.txt", (4, 4))
        problem = pose_problem(pose)
        if problem:
            raise InputError(f"{name}.pose.txt: {problem}")
        depth = depth_raw.astype(np.float32) * self.depth_scale
        depth[(depth_raw == 0) | (depth < self.min_depth_m) | (depth > self.max_depth_m)] = np.nan
        if not np.isfinite(depth).any():
            raise InputError(f"{name}.depth.png: no valid pixel (all 0 or outside "
                             f"{self.min_depth_m:g}..{self.max_depth_m:g} m)")
        h, w = depth.shape
        if self._size is None:
            self._size = (w, h)
        elif (w, h) != self._size:  # one intrinsics file: it cannot fit images of two sizes
            raise InputError(f"{name}: image is {w}x{h}, the folder's first frame {self._size[0]}x{self._size[1]} "
                             "(one intrinsics file fits one image size)")
        K = CameraIntrinsics(width=w, height=h, fx=self.K[0, 0], fy=self.K[1, 1], cx=self.K[0, 2], cy=self.K[1, 2])
        problem = intrinsics_problem(K)
        if problem:
            raise InputError(f"intrinsics file: {problem}")
        index = self._index[name]
        return Frame(stamp_ns=int(index * 1e9 / self.frame_rate_hz), frame_id=self.frame_id,
                     rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), intrinsics=K, T_world_cam=pose, depth=depth)

    def frames(self) -> Iterator[Frame]:
        """Yield usable frames; unusable ones are counted in ``stats``."""
        for name in self.names:
            if name in self.exclude:
                continue
            self.stats.frames_seen += 1
            try:
                frame = self.load(name)
            except InputError as exc:
                self.stats.skip(str(exc))
                continue
            self.stats.frames_used += 1
            yield frame

    def inspect(self) -> list[str]:
        """What the replay uses: the frames, the intrinsics file, the depth convention."""
        K = self.K
        return [f"frames: {len(self.names)} in {self.folder} (frame-*.color / .depth.png / .pose.txt)",
                f"intrinsics: {self._intrinsics_path} (fx {K[0, 0]:g}, fy {K[1, 1]:g}, cx {K[0, 2]:g}, cy {K[1, 2]:g})",
                f"depth: 16-bit PNG x {self.depth_scale:g} m, valid {self.min_depth_m:g}..{self.max_depth_m:g} m; "
                f"poses: *.pose.txt (T_world_cam); stamps: frame number at {self.frame_rate_hz:g} Hz"]

    def take_pose_graph(self) -> None:
        """A frame folder carries no pose graph (the bag reader's counterpart returns SLAM's)."""
        return None

    def close(self) -> None:
        """Nothing to release (for symmetry with the bag reader)."""

    def __enter__(self) -> FrameFolderReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
