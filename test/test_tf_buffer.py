"""TF chain lookups with interpolation and refusal to extrapolate."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.geometry import make_transform, matrix_to_quat_xyzw
from langgs_ros.io.tf_buffer import TransformBuffer, TransformLookupError


def rot_z(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def add(buf, parent, child, stamp, T, static=False):
    buf.add(parent, child, stamp, T[:3, 3], matrix_to_quat_xyzw(T[:3, :3]), static=static)


def test_chain_through_intermediate_frames_with_interpolation():
    buf = TransformBuffer(tolerance_ns=10)
    add(buf, "map", "odom", 0, make_transform(np.eye(3), [1, 0, 0]), static=True)
    add(buf, "odom", "base_link", 100, make_transform(rot_z(0.0), [0, 0, 0]))
    add(buf, "odom", "base_link", 200, make_transform(rot_z(np.pi / 2), [2, 0, 0]))
    add(buf, "base_link", "camera_link", 0, make_transform(np.eye(3), [0, 0, 1]), static=True)
    add(buf, "camera_link", "optical", 0, make_transform(np.eye(3), [0.1, 0, 0]), static=True)
    T = buf.lookup("map", "optical", 150)
    expected = make_transform(np.eye(3), [1, 0, 0]) @ make_transform(rot_z(np.pi / 4), [1, 0, 0]) \
        @ make_transform(np.eye(3), [0, 0, 1]) @ make_transform(np.eye(3), [0.1, 0, 0])
    assert np.allclose(T, expected, atol=1e-9)
    # the inverse direction, through the common ancestor
    assert np.allclose(buf.lookup("optical", "map", 150), np.linalg.inv(expected), atol=1e-9)


def test_extrapolation_unknown_and_disconnected_frames_fail():
    buf = TransformBuffer(tolerance_ns=10)
    add(buf, "map", "base", 100, np.eye(4))
    add(buf, "map", "base", 200, np.eye(4))
    add(buf, "other_root", "cam", 0, np.eye(4), static=True)
    assert np.allclose(buf.lookup("map", "base", 205), np.eye(4))  # within tolerance
    with pytest.raises(TransformLookupError, match="extrapolation"):
        buf.lookup("map", "base", 300)
    with pytest.raises(TransformLookupError, match="does not appear"):
        buf.lookup("map", "nowhere", 150)
    with pytest.raises(TransformLookupError, match="not connected"):
        buf.lookup("map", "cam", 150)


def test_non_finite_samples_are_rejected():
    buf = TransformBuffer()
    buf.add("map", "base", 0, (np.nan, 0, 0), (0, 0, 0, 1))
    buf.add("map", "base", 0, (0, 0, 0), (0, 0, 0, 0))
    assert buf.rejected == 2 and "base" not in buf.frames
