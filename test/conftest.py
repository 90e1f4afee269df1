"""Shared fixtures: a small synthetic bag and its oracle map, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from langgs_ros.config import PipelineConfig
from langgs_ros.pipeline import replay
from langgs_ros.synth.make_bag import SynthOutput, SynthSpec, make_synthetic_bag

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LANGGS_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def synth_bag(tmp_path_factory: pytest.TempPathFactory) -> SynthOutput:
    """72 frames at 320x240 of the bundled room (mcap)."""
    return make_synthetic_bag(tmp_path_factory.mktemp("synth"), SynthSpec(width=320, height=240, frames=72))


@pytest.fixture(scope="session")
def oracle_map(synth_bag: SynthOutput, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Map of ``synth_bag`` built with the noise-free oracle and codebook fusion."""
    out = tmp_path_factory.mktemp("map")
    config = PipelineConfig()
    config.mapping.pixel_stride = 1  # 320x240 at stride 1 samples like 640x480 at stride 2
    replay(synth_bag.bag, out, "oracle", config)
    return out


def write_small_bag(path: Path, *, frames: int = 4, color_encoding: str = "rgb8", camera_info: bool = True,
                    tf: bool = True, depth: bool = True, storage: str = "mcap", pose_topic: str | None = None,
                    distortion: list[float] | None = None, compressed: bool = False,
                    camera_matrix: "np.ndarray | None" = None, distortion_model: str = "plumb_bob",
                    depth_value: int = 2000, depth_topic: str = "/camera/aligned_depth_to_color/image_raw",
                    compressed_depth: str = "", image_stamp=None, tf_ghost_at: int | None = None,
                    path_topic: str = "", time_jump_at: int | None = None) -> Path:
    """A tiny bag (64x48, a wall 2 m ahead) with the chosen defects, via the project's BagWriter.

    ``compressed_depth`` (png, rvl): depth only on ``<depth_topic>/compressedDepth``, as
    image_transport writes it; ``image_stamp(i, stamp)``: the stamp image ``i`` gets (broken
    clocks); ``tf_ghost_at``: one TF sample of that frame 50 km off; ``path_topic``: a nav_msgs/Path
    of the base poses after the last image; ``time_jump_at``: from that frame on, images and TF are
    stamped an hour later (a recording paused and resumed)."""
    import numpy as np

    from langgs_ros.geometry import make_transform
    from langgs_ros.io.bag_writer import BagWriter

    w, h, frame = 64, 48, "cam_optical"
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]]) if camera_matrix is None else camera_matrix
    t0 = 1_000_000_000_000
    with BagWriter(path, storage=storage) as bag:  # type: ignore[arg-type]
        if tf:
            bag.write("/tf_static", bag.tf_message([bag.transform("base", frame, np.eye(4), t0)]), t0)
        for i in range(frames):
            stamp = t0 + (i + 1) * 100_000_000 + (3600 * 10**9 if time_jump_at is not None and i >= time_jump_at else 0)
            pose = make_transform(np.eye(3), [0.2 * i, 0, 0])
            if tf:
                ghost = make_transform(np.eye(3), [50_000.0, 0, 0]) if tf_ghost_at == i else pose
                tfs = [bag.transform("map", "base", ghost, stamp - 10_000_000),
                       bag.transform("map", "base", ghost, stamp + 10_000_000)]
                for t in tfs:
                    bag.write("/tf", bag.tf_message([t]), t.header.stamp.sec * 10**9 + t.header.stamp.nanosec)
            if pose_topic:
                bag.write(pose_topic, bag.pose_stamped(pose, stamp, "map"), stamp)
            stamp = image_stamp(i, stamp) if image_stamp is not None else stamp
            rgb = np.zeros((h, w, 3), np.uint8)
            rgb[..., 0] = np.arange(w, dtype=np.uint8)[None] * 4
            rgb[..., 1] = 100
            if camera_info:
                bag.write("/camera/color/camera_info", bag.camera_info(K, w, h, stamp, frame, D=distortion, model=distortion_model), stamp)
            if compressed:
                bag.write("/camera/color/image_raw/compressed", bag.compressed_image(rgb, "png", stamp, frame), stamp)
            elif color_encoding == "rgb8":
                bag.write("/camera/color/image_raw", bag.image(rgb, "rgb8", stamp, frame), stamp)
            else:
                bag.write("/camera/color/image_raw", bag.image(rgb[..., :2].copy(), color_encoding, stamp, frame), stamp)
            if depth:
                d = np.full((h, w), depth_value, np.uint16)
                if compressed_depth:
                    bag.write(depth_topic + "/compressedDepth",
                              bag.compressed_depth(d, "16UC1", compressed_depth, stamp, frame), stamp)
                else:
                    bag.write(depth_topic, bag.image(d, "16UC1", stamp, frame), stamp)
        if path_topic:
            end = t0 + (frames + 1) * 100_000_000
            poses = [make_transform(np.eye(3), [0.2 * i, 0, 0]) for i in range(frames)]
            bag.write(path_topic, bag.path_message(poses, [t0 + (i + 1) * 100_000_000 for i in range(frames)], end,
                                                   "map"), end)
    return path


@pytest.fixture
def small_bag(tmp_path: Path):
    """Factory: ``small_bag(name, **defects)`` -> path of a tiny bag in tmp_path."""
    return lambda name="bag", **kw: write_small_bag(tmp_path / name, **kw)


def realsense_bag_from_frames(folder: Path, bag_path: Path, rate_hz: float = 10.0,
                              depth_codec: str = "png") -> tuple[Path, int]:
    """A frame folder's real frames (7-Scenes layout) written as realsense-ros records them: raw rgb8
    color, CameraInfo and depth only through image_transport's compressedDepth (``depth_codec``), under
    ``/camera/camera/``, the optical frame ``camera_color_optical_frame`` under ``camera_link`` on
    ``/tf_static`` and ``map -> camera_link`` on ``/tf`` at each image stamp. Returns (bag, frames)."""
    import numpy as np

    from langgs_ros.io.bag_writer import BagWriter
    from langgs_ros.io.frame_folder import FrameFolderReader
    from langgs_ros.synth.make_bag import T_CAMLINK_OPTICAL

    ns, optical, t0 = "/camera/camera", "camera_color_optical_frame", 1_700_000_000_000_000_000
    T_optical_camlink = np.linalg.inv(T_CAMLINK_OPTICAL)
    count = 0
    with BagWriter(bag_path) as bag:
        bag.write("/tf_static", bag.tf_message([bag.transform("camera_link", optical, T_CAMLINK_OPTICAL, t0)]), t0)
        for i, frame in enumerate(FrameFolderReader(folder).frames()):
            stamp = t0 + int(1e9 * (i + 1) / rate_hz)
            K = frame.intrinsics
            bag.write("/tf", bag.tf_message([bag.transform("map", "camera_link", frame.T_world_cam @ T_optical_camlink,
                                                           stamp)]), stamp)
            bag.write(f"{ns}/color/camera_info", bag.camera_info(np.asarray(K.K), K.width, K.height, stamp, optical),
                      stamp)
            bag.write(f"{ns}/color/image_raw", bag.image(frame.rgb, "rgb8", stamp, optical), stamp)
            mm = np.round(np.nan_to_num(frame.depth, nan=0.0) * 1000.0).astype(np.uint16)
            bag.write(f"{ns}/aligned_depth_to_color/image_raw/compressedDepth",
                      bag.compressed_depth(mm, "16UC1", depth_codec, stamp, optical), stamp)
            count += 1
    return bag_path, count
