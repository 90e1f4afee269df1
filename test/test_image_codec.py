"""Message -> numpy conversion of images, depth and CameraInfo."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from langgs_ros.errors import InputError
from langgs_ros.io.image_codec import camera_model_from_info, decode_color, decode_depth, decode_instances

T = get_typestore(Stores.ROS2_HUMBLE).types


def image(data: np.ndarray, encoding: str, step: int | None = None, bigendian: bool = False):
    h, w = data.shape[:2]
    raw = data.tobytes()
    step = step or data.strides[0]
    if step != data.strides[0]:  # pad every row
        rows = [raw[i * data.strides[0]:(i + 1) * data.strides[0]] + b"\x00" * (step - data.strides[0]) for i in range(h)]
        raw = b"".join(rows)
    return T["sensor_msgs/msg/Image"](header=None, height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                                      step=step, data=np.frombuffer(raw, np.uint8))


RGB = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


@pytest.mark.parametrize("encoding,array", [
    ("rgb8", RGB), ("bgr8", RGB[..., ::-1].copy()),
    ("rgba8", np.concatenate([RGB, np.full((4, 5, 1), 255, np.uint8)], axis=2)),
    ("bgra8", np.concatenate([RGB[..., ::-1], np.full((4, 5, 1), 9, np.uint8)], axis=2)),
])
def test_color_encodings_decode_to_rgb(encoding, array):
    assert np.array_equal(decode_color(image(array, encoding)), RGB)


def test_mono8_and_row_padding():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = decode_color(image(gray, "mono8", step=8))
    assert out.shape == (4, 5, 3) and np.array_equal(out[..., 1], gray)


def test_unknown_encoding_and_short_data_are_clear_errors():
    with pytest.raises(InputError, match="unsupported color encoding 'yuv422'"):
        decode_color(image(RGB[..., :2].copy(), "yuv422"))
    msg = image(RGB, "rgb8")
    msg.data = msg.data[:10]
    with pytest.raises(InputError, match="needs"):
        decode_color(msg)


def test_depth_16uc1_millimetres_and_invalid_values():
    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    d = decode_depth(image(mm, "16UC1"), max_depth_m=10.0)
    assert np.isnan(d[0, 0]) and d[0, 1] == pytest.approx(1.5) and np.isnan(d[1, 0]) and d[1, 1] == pytest.approx(0.25)
    big = decode_depth(image(mm.byteswap(), "16UC1", bigendian=True), max_depth_m=10.0)
    assert big[0, 1] == pytest.approx(1.5)


def test_depth_32fc1_metres_nan_inf_zero_invalid():
    m = np.array([[np.nan, np.inf], [0.0, 2.25]], np.float32)
    d = decode_depth(image(m, "32FC1"))
    assert np.isnan(d[:, 0]).all() and np.isnan(d[0, 1]) and d[1, 1] == pytest.approx(2.25)
    with pytest.raises(InputError, match="depth encoding"):
        decode_depth(image(RGB, "rgb8"))


def test_instances_16uc1():
    ids = np.array([[0, 7], [300, 2]], np.uint16)
    assert np.array_equal(decode_instances(image(ids, "16UC1")), ids)


def camera_info(k, d=(0.0,) * 5, w=640, h=480, model="plumb_bob"):
    return T["sensor_msgs/msg/CameraInfo"](header=None, height=h, width=w, distortion_model=model,
                                           d=np.array(d, float), k=np.array(k, float), r=np.eye(3).ravel(),
                                           p=np.zeros(12), binning_x=0, binning_y=0, roi=None)


def test_camera_info_intrinsics_and_bad_values():
    model = camera_model_from_info(camera_info([500, 0, 320, 0, 510, 240, 0, 0, 1]))
    assert (model.intrinsics.fx, model.intrinsics.fy, model.intrinsics.cx) == (500, 510, 320)
    assert not model.is_distorted
    with pytest.raises(InputError, match="not a usable camera"):
        camera_model_from_info(camera_info([0, 0, 320, 0, 0, 240, 0, 0, 1]))
    with pytest.raises(InputError, match="distortion model"):
        camera_model_from_info(camera_info([500, 0, 320, 0, 500, 240, 0, 0, 1], d=(0.1,), model="weird"))


def test_plumb_bob_undistortion_moves_pixels_and_matches_opencv():
    model = camera_model_from_info(camera_info([500, 0, 319.5, 0, 500, 239.5, 0, 0, 1], d=(-0.3, 0.1, 0, 0, 0)))
    assert model.is_distorted
    corner = model.undistort_points(np.array([[10.0, 10.0]]))[0]
    assert np.linalg.norm(corner - [10, 10]) > 5  # barrel distortion pulls corners in; undistortion pushes out
    ids = np.zeros((480, 640), np.uint16)
    ids[200:280, 280:360] = 5
    out = model.undistort(ids, nearest=True)
    assert set(np.unique(out)) <= {0, 5}  # nearest neighbour keeps ids intact
