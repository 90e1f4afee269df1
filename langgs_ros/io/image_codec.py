"""sensor_msgs conversion to numpy: Image, CompressedImage, CameraInfo; undistortion.

Only message *fields* are used, so the same functions accept rclpy messages on a robot and
``rosbags`` messages offline (both carry ROS's field names).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from langgs_ros.errors import InputError
from langgs_ros.io.camera_check import distortion_problem, intrinsics_problem
from langgs_ros.types import CameraIntrinsics

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "stamp_to_ns",
    "image_array",
    "decode_color",
    "decode_compressed_color",
    "declared_size",
    "check_image_size",
    "decode_depth",
    "decode_instances",
    "CameraModel",
    "camera_model_from_info",
]

COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _raw_bytes(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(memoryview(data), dtype=np.uint8)


def image_array(msg: Any, dtype: np.dtype, channels: int) -> np.ndarray:
    """Rows of an Image message as [H, W, C] of ``dtype``, honouring ``step`` and endianness."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    raw = _raw_bytes(msg.data)
    if height <= 0 or width <= 0:
        raise InputError(f"image has no pixels ({width}x{height})")
    if step < row_bytes or raw.size < step * (height - 1) + row_bytes:
        raise InputError(
            f"{msg.encoding} image {width}x{height} with step {step} needs "
            f"{step * height} bytes of data, message has {raw.size}"
        )
    if raw.size < step * height:
        raw = np.concatenate([raw, np.zeros(step * height - raw.size, np.uint8)])
    rows = raw[: step * height].reshape(height, step)[:, :row_bytes]
    order = ">" if bool(msg.is_bigendian) else "<"
    arr = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
    return arr.reshape(height, width, channels).astype(dtype, copy=False)


def decode_color(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> [H, W, 3] uint8 RGB. Raises InputError on other encodings."""
    encoding = str(msg.encoding)
    if encoding not in _CHANNELS:
        raise InputError(
            f"unsupported color encoding '{encoding}' (supported: {', '.join(COLOR_ENCODINGS)})"
        )
    img = image_array(msg, np.uint8, _CHANNELS[encoding])
    if encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    if encoding.startswith("bgr"):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])


def declared_size(msg: Any) -> tuple[int, int]:
    """(width, height) an Image or CompressedImage message declares, read without decoding its
    pixels (a CompressedImage's from its PNG IHDR or JPEG SOF header); (0, 0) if unreadable."""
    if not hasattr(msg, "format"):
        return int(msg.width), int(msg.height)
    data = _raw_bytes(msg.data)[: 1 << 20].tobytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:2] == b"\xff\xd8":  # JPEG: walk the markers to the first start-of-frame
        pos = 2
        while pos + 9 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[pos + 5: pos + 9])
                return int(width), int(height)
            (length,) = struct.unpack(">H", data[pos + 2: pos + 4])
            pos += 2 + length
    return 0, 0


def check_image_size(msg: Any, max_pixels: int) -> None:
    """Raise InputError if an image message declares more than ``max_pixels`` pixels (checked
    before decoding, so a forged header cannot make the decoder allocate gigabytes)."""
    w, h = declared_size(msg)
    if w * h > max_pixels:
        raise InputError(f"image declares {w}x{h} = {w * h} pixels, over input.max_image_pixels={max_pixels}")


def decode_compressed_color(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> [H, W, 3] uint8 RGB."""
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise InputError(f"'{msg.format}' is a compressed depth image, not a color image")
    buf = _raw_bytes(msg.data)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise InputError(f"cannot decode CompressedImage (format '{msg.format}', {buf.size} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_depth(msg: Any, min_depth_m: float = 0.0, max_depth_m: float = np.inf) -> np.ndarray:
    """Depth sensor_msgs/Image -> [H, W] float32 metres along the optical axis, NaN = invalid.

    16UC1/mono16 are millimetres, 32FC1 metres; 0, NaN, inf and values outside
    [min_depth_m, max_depth_m] are invalid.
    """
    encoding = str(msg.encoding)
    if encoding in ("16UC1", "mono16"):
        depth = image_array(msg, np.uint16, 1)[:, :, 0].astype(np.float32) * 0.001
    elif encoding == "32FC1":
        depth = image_array(msg, np.float32, 1)[:, :, 0].copy()
    else:
        raise InputError(
            f"unsupported depth encoding '{encoding}' (supported: {', '.join(DEPTH_ENCODINGS)})"
        )
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(depth) | (depth <= max(min_depth_m, 0.0)) | (depth > max_depth_m)
    depth[bad] = np.nan
    return depth


def decode_instances(msg: Any) -> np.ndarray:
    """Instance-id sensor_msgs/Image (16UC1/mono16, or 8UC1/mono8) -> [H, W] uint16."""
    encoding = str(msg.encoding)
    if encoding in ("16UC1", "mono16"):
        return image_array(msg, np.uint16, 1)[:, :, 0].copy()
    if encoding in ("8UC1", "mono8"):
        return image_array(msg, np.uint8, 1)[:, :, 0].astype(np.uint16)
    raise InputError(f"unsupported instance-id encoding '{encoding}' (use 16UC1)")


@dataclass
class CameraModel:
    """A CameraInfo's pinhole intrinsics and lens distortion, with cached undistortion maps."""

    intrinsics: CameraIntrinsics
    distortion_model: str
    D: np.ndarray  # noqa: N815

    def __post_init__(self) -> None:
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def is_distorted(self) -> bool:
        """True when the image needs undistortion before pinhole projection."""
        return bool(np.any(self.D != 0))

    def _undistort_maps(self) -> tuple[np.ndarray, np.ndarray]:
        if self._maps is None:
            K = self.intrinsics.K
            size = (self.intrinsics.width, self.intrinsics.height)
            if self.distortion_model == "equidistant":
                self._maps = cv2.fisheye.initUndistortRectifyMap(
                    K, self.D[:4], np.eye(3), K, size, cv2.CV_32FC1
                )
            else:
                self._maps = cv2.initUndistortRectifyMap(K, self.D, np.eye(3), K, size, cv2.CV_32FC1)
        return self._maps

    def undistort(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        """Undistorted copy of an image of this camera (same K); nearest for depth and ids.

        Pixels that map outside the source become 0 (NaN for float images).
        """
        if not self.is_distorted:
            return image
        if image.shape[:2] != (self.intrinsics.height, self.intrinsics.width):
            raise InputError(
                f"image is {image.shape[1]}x{image.shape[0]} but CameraInfo says "
                f"{self.intrinsics.width}x{self.intrinsics.height}"
            )
        try:
            map_x, map_y = self._undistort_maps()
        except cv2.error as exc:
            raise InputError(f"cannot undistort with model '{self.distortion_model}' and "
                             f"{self.D.size} coefficients: {str(exc).strip().splitlines()[-1]}") from None
        border = float("nan") if image.dtype.kind == "f" else 0
        return cv2.remap(
            image, map_x, map_y, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=border,
        )

    def undistort_points(self, uv: np.ndarray) -> np.ndarray:
        """Distorted pixel coordinates [N, 2] -> undistorted pixel coordinates [N, 2] (same K)."""
        pts = np.asarray(uv, dtype=np.float64).reshape(-1, 1, 2)
        K = self.intrinsics.K
        if self.distortion_model == "equidistant":
            out = cv2.fisheye.undistortPoints(pts, K, self.D[:4], P=K)
        else:
            out = cv2.undistortPoints(pts, K, self.D, P=K)
        return out.reshape(-1, 2)


def camera_model_from_info(msg: Any) -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel (ROS 2's ``k``, ``d`` or ROS 1's ``K``, ``D``).
    Raises InputError for unusable values."""
    K = np.asarray(msg.k if hasattr(msg, "k") else msg.K, dtype=np.float64).reshape(-1)
    if K.size != 9:
        raise InputError(f"CameraInfo.k has {K.size} values, expected 9")
    intrinsics = CameraIntrinsics(
        width=int(msg.width), height=int(msg.height),
        fx=float(K[0]), fy=float(K[4]), cx=float(K[2]), cy=float(K[5]),
    )
    problem = intrinsics_problem(intrinsics)
    if problem:
        raise InputError(f"CameraInfo is not a usable camera: {problem}")
    model = str(msg.distortion_model)
    D = np.asarray(msg.d if hasattr(msg, "d") else msg.D, dtype=np.float64).reshape(-1)
    problem = distortion_problem(model, D)
    if problem:
        raise InputError(f"CameraInfo is not a usable camera: {problem}")
    return CameraModel(intrinsics=intrinsics, distortion_model=model, D=D)
