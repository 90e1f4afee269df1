"""Recordings as people have them (issues 32 and 33): an MCAP cut short by a dead battery, ROS 1
bags in the TUM RGB-D layout, image_transport's compressedDepth decoded as its plugin encodes it."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest

from langgs_ros.errors import InputError
from langgs_ros.io.depth_codec import decode_compressed_depth, encode_compressed_depth, rvl_decode, rvl_encode
from test_cli_bad_input import assert_clean_failure, run_cli


def _reference_rvl(values: np.ndarray) -> bytes:
    """compressed_depth_image_transport's RvlCodec::CompressRVL, line by line (32-bit words)."""
    words, word, nibbles = [], 0, 0

    def encode_vle(value: int) -> None:
        nonlocal word, nibbles
        while True:
            nibble = value & 0x7
            value >>= 3
            if value:
                nibble |= 0x8
            word = ((word << 4) | nibble) & 0xFFFFFFFF
            nibbles += 1
            if nibbles == 8:
                words.append(word)
                nibbles, word = 0, 0
            if not value:
                return

    i, previous, n = 0, 0, len(values)
    while i < n:
        zeros = 0
        while i < n and values[i] == 0:
            zeros, i = zeros + 1, i + 1
        encode_vle(zeros)
        nonzeros = 0
        while i + nonzeros < n and values[i + nonzeros]:
            nonzeros += 1
        encode_vle(nonzeros)
        for _ in range(nonzeros):
            delta = int(values[i]) - previous
            encode_vle(((delta << 1) ^ (delta >> 31)) & 0xFFFFFFFF)
            previous = int(values[i])
            i += 1
    if nibbles:
        words.append((word << 4 * (8 - nibbles)) & 0xFFFFFFFF)
    return struct.pack(f"<{len(words)}I", *words)


def test_rvl_matches_the_plugins_codec():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6000, 5000).astype(np.uint16)
    values[rng.random(values.size) < 0.3] = 0
    values[:40] = 0
    encoded = rvl_encode(values)
    assert encoded == _reference_rvl(values)
    assert np.array_equal(rvl_decode(np.frombuffer(encoded, np.uint8), values.size), values)
    with pytest.raises(InputError, match="ends before"):
        rvl_decode(np.frombuffer(encoded[: len(encoded) // 2], np.uint8), values.size)


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_compressed_depth_decodes_to_the_raw_depth(codec):
    rng = np.random.default_rng(1)
    metres = rng.uniform(0.3, 9.0, (48, 64)).astype(np.float32)
    metres[4:8, 4:8] = np.nan  # invalid
    metres[0, :5] = 12.0  # beyond the publisher's 10 m depth_max: dropped by the plugin
    fmt, data = encode_compressed_depth(metres, "32FC1", codec)
    assert fmt == "32FC1; compressedDepth" + ("" if codec == "png" else " rvl")
    depth = decode_compressed_depth(SimpleNamespace(format=fmt, data=data), 1 << 24)
    gone = np.isnan(metres) | (metres >= 10.0)
    assert np.array_equal(np.isnan(depth), gone)
    # the inverse-depth quantisation: about 1 mm at 1 m, 1 % at 9 m
    assert np.all(np.abs(depth[~gone] - metres[~gone]) <= 1.2e-3 * metres[~gone] ** 2 + 1e-4)
    millimetres = np.where(gone, 0, metres * 1000).astype(np.uint16)
    fmt, data = encode_compressed_depth(millimetres, "16UC1", codec)
    depth = decode_compressed_depth(SimpleNamespace(format=fmt, data=data), 1 << 24)
    assert np.allclose(depth, np.where(gone, np.nan, millimetres / 1000.0), equal_nan=True)


def test_malformed_compressed_depth_is_an_input_error():
    fmt, data = encode_compressed_depth(np.full((8, 8), 1000, np.uint16), "16UC1", "rvl")
    for bad_fmt, bad_data in [(fmt, data[:10]), ("16UC1; compressedDepth zip", data), ("8UC1; compressedDepth rvl", data),
                              (fmt, data[:12] + struct.pack("<II", 100000, 100000) + data[20:])]:
        with pytest.raises(InputError):
            decode_compressed_depth(SimpleNamespace(format=bad_fmt, data=bad_data), 1 << 24)


def test_a_recording_cut_short_without_metadata_is_salvaged(small_bag, tmp_path):
    bag = small_bag(frames=8)
    storage = next(bag.glob("*.mcap"))
    data = storage.read_bytes()
    storage.write_bytes(data[: int(len(data) * 0.7)])  # the battery died mid-chunk...
    (bag / "metadata.yaml").unlink()  # ...before the recorder closed the bag
    proc = run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none")
    assert proc.returncode == 0, proc.stderr
    assert "salvaged:" in proc.stderr and "recovered" in proc.stderr and "reindex" not in proc.stderr
    used = int(proc.stderr.split(" frames used")[0].rsplit("[replay] ", 1)[1].split("/")[0])
    assert 0 < used < 8
    storage.write_bytes(b"\x89MCAP0\r\n" + b"\x01" + b"\xff" * 20)  # nothing complete in it at all
    assert_clean_failure(run_cli("replay", bag, "--out", tmp_path / "n", "--semantics", "none"), "cannot")


def _tum_ros1_bag(path, frames: int = 5):
    """A ROS 1 bag in the TUM RGB-D layout: /camera/rgb/image_color (rgb8), /camera/depth/image
    (32FC1 metres), /camera/rgb/camera_info (ROS 1 field names K, D), /tf (tf/tfMessage) from
    /world to /openni_rgb_optical_frame."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    ts.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf/msg/tfMessage"))
    T = ts.types
    w, h = 64, 48

    def header(stamp: int, frame: str):  # noqa: ANN202
        return T["std_msgs/msg/Header"](seq=0, stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                                    nanosec=stamp % 10**9), frame_id=frame)

    with Writer(path) as bag:
        by_topic = {topic: bag.add_connection(topic, name, typestore=ts) for topic, name in [
            ("/camera/rgb/image_color", "sensor_msgs/msg/Image"), ("/camera/depth/image", "sensor_msgs/msg/Image"),
            ("/camera/rgb/camera_info", "sensor_msgs/msg/CameraInfo"), ("/tf", "tf/msg/tfMessage")]}
        for i in range(frames):
            stamp = 1_305_031_102_000_000_000 + i * 33_000_000
            for t in (stamp - 5_000_000, stamp + 5_000_000):
                tf = T["geometry_msgs/msg/TransformStamped"](
                    header=header(t, "/world"), child_frame_id="/openni_rgb_optical_frame",
                    transform=T["geometry_msgs/msg/Transform"](
                        translation=T["geometry_msgs/msg/Vector3"](x=0.02 * i, y=0.0, z=0.0),
                        rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
                bag.write(by_topic["/tf"], t, ts.serialize_ros1(T["tf/msg/tfMessage"](transforms=[tf]), "tf/msg/tfMessage"))
            rgb = np.zeros((h, w, 3), np.uint8)
            rgb[..., 0] = np.arange(w, dtype=np.uint8)[None] * 4
            image = T["sensor_msgs/msg/Image"](header=header(stamp, "/openni_rgb_optical_frame"), height=h, width=w,
                                               encoding="rgb8", is_bigendian=0, step=3 * w, data=rgb.reshape(-1))
            depth = np.full((h, w), 2.0, np.float32)
            depth[:4] = np.nan
            dmsg = T["sensor_msgs/msg/Image"](header=header(stamp, "/openni_rgb_optical_frame"), height=h, width=w,
                                              encoding="32FC1", is_bigendian=0, step=4 * w,
                                              data=depth.view(np.uint8).reshape(-1))
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header(stamp, "/openni_rgb_optical_frame"), height=h, width=w, distortion_model="plumb_bob",
                D=np.zeros(5), K=np.array([50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1]), R=np.eye(3).reshape(-1),
                P=np.array([50.0, 0, 31.5, 0, 0, 50.0, 23.5, 0, 0, 0, 1, 0]), binning_x=0, binning_y=0, roi=roi)
            for topic, msg, name in [("/camera/rgb/image_color", image, "sensor_msgs/msg/Image"),
                                     ("/camera/depth/image", dmsg, "sensor_msgs/msg/Image"),
                                     ("/camera/rgb/camera_info", info, "sensor_msgs/msg/CameraInfo")]:
                bag.write(by_topic[topic], stamp, ts.serialize_ros1(msg, name))
    return path


def test_a_ros1_bag_in_the_tum_layout_replays_with_flags(tmp_path):
    bag = _tum_ros1_bag(tmp_path / "rgbd_dataset_freiburg1_xyz.bag")
    # the default topics are not there: the error lists the image topics and the flag to choose one
    assert_clean_failure(run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none"),
                         "/camera/rgb/image_color", "--color-topic")
    flags = ["--color-topic", "/camera/rgb/image_color", "--depth-topic", "/camera/depth/image",
             "--camera-info-topic", "/camera/rgb/camera_info", "--fixed-frame", "world"]
    proc = run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none", *flags)
    assert proc.returncode == 0, proc.stderr
    assert "5/5 frames used" in proc.stderr and "(tf/tfMessage" in proc.stderr
    from langgs_ros.mapping.map_io import load_map

    means = load_map(tmp_path / "m").store["means"]
    assert np.allclose(np.median(means[:, 2]), 2.0, atol=1e-3)  # the wall 2 m ahead of the optical frame
