"""One validator for camera geometry, used by every frame source (issue 14, item 4): degenerate
intrinsics, non-rigid poses and distortion lists OpenCV rejects skip the frame with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_small_bag
from langgs_ros.config import InputConfig
from langgs_ros.geometry import make_transform
from langgs_ros.io.camera_check import distortion_problem, frame_problem, intrinsics_problem, pose_problem
from langgs_ros.io.frame_builder import build_frame
from langgs_ros.io.image_codec import CameraModel
from langgs_ros.types import CameraIntrinsics, Frame
from test_cli_bad_input import assert_clean_failure, run_cli
from test_cli_paths import write_frame_folder

GOOD = CameraIntrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)


@pytest.mark.parametrize("fx, fy, cx, cy, words", [
    (0.0, 525.0, 319.5, 239.5, "not positive"),
    (-5.0, 525.0, 319.5, 239.5, "not positive"),
    (1e-9, 1e-9, 319.5, 239.5, "absurd"),
    (1e12, 1e12, 1e9, 239.5, "absurd"),
    (np.nan, 525.0, 319.5, 239.5, "not finite"),
    (525.0, np.inf, 319.5, 239.5, "not finite"),
    (800.0, 110.0, 319.5, 239.5, "differ"),
    (525.0, 525.0, 1e9, 239.5, "principal point"),
    (525.0, 525.0, 319.5, -900.0, "principal point"),
])
def test_degenerate_intrinsics(fx, fy, cx, cy, words):
    assert intrinsics_problem(GOOD) is None
    problem = intrinsics_problem(CameraIntrinsics(640, 480, fx, fy, cx, cy))
    assert problem is not None and words in problem


def test_image_size_must_be_positive_and_mappable():
    assert "not positive" in intrinsics_problem(CameraIntrinsics(0, 480, 525, 525, 0, 240))
    assert "too small" in intrinsics_problem(CameraIntrinsics(1, 48, 50, 50, 0.5, 23.5))


@pytest.mark.parametrize("model, n, ok", [
    ("plumb_bob", 5, True), ("plumb_bob", 4, True), ("plumb_bob", 3, False), ("plumb_bob", 20, False),
    ("rational_polynomial", 8, True), ("rational_polynomial", 3, False), ("rational_polynomial", 6, False),
    ("equidistant", 4, True), ("equidistant", 1, False), ("weird", 5, False),
])
def test_distortion_lengths_opencv_accepts(model, n, ok):
    D = np.full(n, 0.01)
    assert (distortion_problem(model, D) is None) == ok
    assert distortion_problem(model, np.zeros(n)) is None  # all zero: no distortion, any length
    if ok:  # and what passes really undistorts
        CameraModel(GOOD, model, D).undistort(np.zeros((480, 640, 3), np.uint8))


@pytest.mark.parametrize("T, words", [
    (np.zeros((4, 4)), "last row"),
    (np.diag([100.0, 100.0, 100.0, 1.0]), "not a rigid transform"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "not a rigid transform"),
    (np.eye(3), "4x4"),
    (make_transform(np.eye(3), [1e7, 0, 0]), "from the origin"),
    (np.full((4, 4), np.nan), "not finite"),
])
def test_poses_that_are_not_rigid(T, words):
    assert pose_problem(np.eye(4)) is None
    assert words in pose_problem(T)


def test_frames_whose_arrays_disagree_with_their_intrinsics():
    K = CameraIntrinsics(64, 48, 50.0, 50.0, 31.5, 23.5)
    good = Frame(0, "cam", np.zeros((48, 64, 3), np.uint8), K, np.eye(4), depth=np.ones((48, 64), np.float32))
    assert frame_problem(good) is None
    for bad, words in [(Frame(0, "cam", np.zeros((48, 64), np.uint8), K, np.eye(4)), "color image"),
                       (Frame(0, "cam", np.zeros((40, 64, 3), np.uint8), K, np.eye(4)), "color image"),
                       (Frame(0, "cam", np.zeros((48, 64, 3), np.uint8), K, np.eye(3)), "4x4"),
                       (Frame(0, "cam", np.zeros((48, 64, 3), np.uint8), K, np.eye(4),
                              depth=np.ones((48, 60), np.float32)), "depth image")]:
        assert words in frame_problem(bad)


class _Msg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _image(arr: np.ndarray, encoding: str) -> _Msg:
    h, w = arr.shape[:2]
    stamp = _Msg(sec=1, nanosec=0)
    return _Msg(header=_Msg(stamp=stamp, frame_id="cam"), height=h, width=w, encoding=encoding, is_bigendian=0,
                step=arr.strides[0], data=arr.tobytes())


def test_the_shared_frame_builder_returns_reasons_instead_of_raising():
    """build_frame is what the node and the bag reader share: every defect is a reason."""
    K = CameraIntrinsics(64, 48, 50.0, 50.0, 31.5, 23.5)
    color = _image(np.zeros((48, 64, 3), np.uint8), "rgb8")
    depth = _image(np.full((48, 64), 2000, np.uint16), "16UC1")
    cfg = InputConfig()
    assert isinstance(build_frame(color, depth, None, CameraModel(K, "plumb_bob", np.zeros(5)), np.eye(4), cfg), Frame)
    cases = [
        (CameraModel(K, "plumb_bob", np.full(3, 0.1)), np.eye(4), depth, "3 coefficients"),
        (CameraModel(K, "equidistant", np.full(1, 0.1)), np.eye(4), depth, "1 coefficients"),
        (CameraModel(CameraIntrinsics(64, 48, 0.0, 50.0, 31.5, 23.5), "", np.zeros(0)), np.eye(4), depth, "focal"),
        (CameraModel(K, "", np.zeros(0)), np.diag([100.0, 100, 100, 1]), depth, "rigid"),
        (CameraModel(K, "", np.zeros(0)), np.eye(4), _image(np.full((48, 64), np.nan, np.float32), "32FC1"),
         "no valid pixel"),
        (CameraModel(CameraIntrinsics(32, 24, 25.0, 25.0, 15.5, 11.5), "", np.zeros(0)), np.eye(4), depth,
         "does not match CameraInfo"),
    ]
    for model, pose, d, words in cases:
        result = build_frame(color, d, None, model, pose, cfg)
        assert isinstance(result, str) and words in result, (words, result)


def test_a_huge_declared_image_is_refused_before_decoding():
    cfg = InputConfig(max_image_pixels=10_000)
    big = _Msg(header=_Msg(stamp=_Msg(sec=1, nanosec=0), frame_id="cam"), height=20000, width=20000,
               encoding="rgb8", is_bigendian=0, step=60000, data=b"\0" * 1000)
    K = CameraIntrinsics(20000, 20000, 20000.0, 20000.0, 9999.5, 9999.5)
    result = build_frame(big, None, None, CameraModel(K, "", np.zeros(0)), np.eye(4), cfg)
    assert isinstance(result, str) and "max_image_pixels" in result


def test_a_forged_png_header_is_refused_before_decoding():
    import struct
    import zlib

    import cv2

    from langgs_ros.io.image_codec import check_image_size, declared_size
    from langgs_ros.errors import InputError

    png = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", 20000, 20000)  # IHDR width, height
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    msg = _Msg(format="png", data=bytes(png))
    assert declared_size(msg) == (20000, 20000)
    with pytest.raises(InputError, match="max_image_pixels"):
        check_image_size(msg, 16_777_216)


# -- through the command line: a frame skipped with its reason, never garbage -------------------
@pytest.mark.parametrize("K, words", [
    ([0.0, 0, 31.5, 0, 50, 23.5, 0, 0, 1], "not positive"),
    ([1e-9, 0, 31.5, 0, 1e-9, 23.5, 0, 0, 1], "absurd"),
    ([1e12, 0, 1e9, 0, 1e12, 23.5, 0, 0, 1], "absurd"),
])
def test_bags_with_degenerate_camera_info(tmp_path, K, words):
    bag = write_small_bag(tmp_path / "bag", camera_matrix=np.array(K).reshape(3, 3))
    assert_clean_failure(run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none"),
                         "no usable frames", words)


@pytest.mark.parametrize("model, n", [("plumb_bob", 3), ("plumb_bob", 20), ("rational_polynomial", 6),
                                      ("equidistant", 1)])
def test_bags_with_distortion_opencv_rejects(tmp_path, model, n):
    bag = write_small_bag(tmp_path / "bag", distortion=[0.01] * n, distortion_model=model)
    assert_clean_failure(run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none"),
                         "no usable frames", f"{n} coefficients")


def test_a_bag_whose_depth_is_all_invalid(tmp_path):
    bag = write_small_bag(tmp_path / "bag", depth_value=0)
    assert_clean_failure(run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none"),
                         "no usable frames", "no valid pixel")


def test_frame_folders_with_degenerate_geometry(tmp_path):
    assert_clean_failure(run_cli("replay", write_frame_folder(tmp_path / "fx0", fx=0.0), "--out", tmp_path / "m",
                                 "--semantics", "none"), "no usable frames", "not positive")
    assert_clean_failure(run_cli("replay", write_frame_folder(tmp_path / "scaled", pose_scale=100.0), "--out",
                                 tmp_path / "m", "--semantics", "none"), "no usable frames", "not a rigid transform")
    assert_clean_failure(run_cli("replay", write_frame_folder(tmp_path / "nodepth", depth_mm=0), "--out",
                                 tmp_path / "m", "--semantics", "none"), "no usable frames", "no valid pixel")


def test_declared_size_of_real_encoders():
    import cv2

    from langgs_ros.io.image_codec import declared_size

    img = np.zeros((37, 53, 3), np.uint8)
    for ext in (".png", ".jpg"):
        assert declared_size(_Msg(format=ext[1:], data=cv2.imencode(ext, img)[1].tobytes())) == (53, 37)
    assert declared_size(_Msg(format="jpeg", data=b"garbage")) == (0, 0)
