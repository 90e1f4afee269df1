"""Top-down PNG of a map with a query's mask, boxes and goal pose (x right, y up, fixed frame)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from langgs_ros.errors import OutputError
from langgs_ros.io.output_paths import atomic_write, check_output_file
from langgs_ros.query.engine import QueryResult

__all__ = ["render_top_down", "write_png"]

_OBJECT_COLORS = [(255, 0, 255), (255, 160, 0), (0, 200, 255), (120, 255, 0)]  # RGB


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB image as PNG atomically; raises OutputError if ``path`` cannot be written."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"cannot encode the picture {path} as PNG")
    check_output_file(path, "picture")
    atomic_write(path, lambda fh: fh.write(buf.tobytes()), what="picture", prefix=".", suffix=".png.tmp")


def _age(seconds: float) -> str:
    """A short age: 4.2 s, 12 min, 3.5 h, 2.0 d."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 86400 else f"{seconds / 86400:.1f} d"


def _extent(means: np.ndarray, result: QueryResult | None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) x, y (m) of the picture: the bulk of the map (0.1 to 99.9 % of its points in x and
    in y: a few stray Gaussians far off do not shrink the rest to a dot) and every answer."""
    lo, hi = np.percentile(means[:, :2], 0.1, axis=0), np.percentile(means[:, :2], 99.9, axis=0)
    if result is not None:
        for obj in result.objects[: len(_OBJECT_COLORS)]:
            lo, hi = np.minimum(lo, obj.bbox_min[:2]), np.maximum(hi, obj.bbox_max[:2])
        if result.goal_pose is not None:
            lo, hi = np.minimum(lo, result.goal_pose.position[:2]), np.maximum(hi, result.goal_pose.position[:2])
    return lo - 0.3, hi + 0.3


def render_top_down(means: np.ndarray, colors: np.ndarray, result: QueryResult | None = None,
                    robot_radius: float = 0.25, max_size_px: int = 1200) -> np.ndarray:
    """[H, W, 3] uint8 RGB view from above of Gaussians at ``means`` [N, 3] with ``colors`` [N, 3]
    (top-most per pixel), objects tinted and boxed (best first, magenta), the goal as a circle of
    ``robot_radius`` with a heading."""
    if len(means) == 0:
        return np.full((200, 200, 3), 40, np.uint8)
    lo, hi = _extent(means, result)
    scale = min(200.0, max_size_px / float(np.max(hi - lo)))  # pixels per metre
    width, height = (np.ceil((hi - lo) * scale).astype(int) + 1).tolist()
    header = 28
    img = np.full((height + header, width, 3), 30, np.uint8)

    def to_px(xy: np.ndarray) -> np.ndarray:  # clipped: cv2 drawing takes int32, and a goal may lie off the map
        px = np.stack([(xy[:, 0] - lo[0]) * scale, header + (hi[1] - xy[:, 1]) * scale], axis=1)
        return np.clip(np.nan_to_num(px), -10 * max(width, height), 10 * max(width, height)).astype(int)

    def inside(px: np.ndarray) -> np.ndarray:
        return px[(px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height + header)]

    order = np.argsort(means[:, 2], kind="stable")  # highest drawn last
    px = to_px(means[order, :2])
    ok = (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= header) & (px[:, 1] < height + header)
    img[px[ok, 1], px[ok, 0]] = (colors[order][ok] * 0.6).astype(np.uint8)
    if result is not None:
        for rank, obj in reversed(list(enumerate(result.objects[: len(_OBJECT_COLORS)]))):
            color = _OBJECT_COLORS[rank]
            p = inside(to_px(obj.points[:, :2]))
            img[p[:, 1], p[:, 0]] = color
            a, b = to_px(np.array([obj.bbox_min[:2], obj.bbox_max[:2]]))
            cv2.rectangle(img, (a[0], b[1]), (b[0], a[1]), color, 1)
            age = "" if obj.age_s is None else f", seen {_age(obj.age_s)} ago"
            cv2.putText(img, f"#{rank + 1} {obj.score:.2f}{age}", (a[0], b[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        color, 1)
        if result.goal_pose is not None:
            g = result.goal_pose
            c = to_px(g.position[None, :2])[0]
            tip = to_px((g.position[:2] + 0.4 * np.array([np.cos(g.yaw), np.sin(g.yaw)]))[None])[0]
            cv2.circle(img, tuple(int(x) for x in c), max(2, int(robot_radius * scale)), (0, 255, 0), 2)
            cv2.arrowedLine(img, tuple(int(x) for x in c), tuple(int(x) for x in tip), (0, 255, 0), 2, tipLength=0.3)
        title = f"'{result.query}': {len(result.objects)} object(s)" + ("" if result.goal_pose else ", no goal")
    else:
        title = f"{len(means)} Gaussians"
    bar = int(scale)  # 1 m scale bar
    cv2.line(img, (width - bar - 10, 14), (width - 10, 14), (255, 255, 255), 2)
    cv2.putText(img, "1 m", (width - bar - 10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
    cv2.putText(img, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return img
