"""Real recorded data (../shared/data/real): geometry on noisy RGB-D frames and a real bag's formats."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA, realsense_bag_from_frames
from langgs_ros.config import PipelineConfig
from langgs_ros.evaluation import depth_error_in_view
from langgs_ros.io.camera_presets import apply_preset
from langgs_ros.io.frame_folder import FrameFolderReader
from langgs_ros.io.image_codec import camera_model_from_info, decode_compressed_color
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.mapping.plane_sweep import PlaneSweepConfig, PlaneSweepDepth
from langgs_ros.pipeline import build_map, replay

SHELF = SHARED_DATA / "shelf_objects" / "frames"
ARUCO = SHARED_DATA / "aruco_bag"
needs_shelf = pytest.mark.skipif(not SHELF.is_dir(), reason=f"real frames not found at {SHELF}")
needs_aruco = pytest.mark.skipif(not ARUCO.is_dir(), reason=f"real bag not found at {ARUCO}")


@needs_shelf
def test_shelf_map_surface_agrees_with_held_out_depth():
    names = FrameFolderReader(SHELF).names
    held_out = set(names[2::5])  # every fifth frame is never integrated
    source = FrameFolderReader(SHELF, exclude=held_out)
    mapper = Mapper(PipelineConfig().mapping, backend=None)
    summary = build_map(source, mapper)
    assert summary.keyframes >= 5 and source.stats.frames_used == len(names) - len(held_out)
    loader = FrameFolderReader(SHELF)
    errors = np.concatenate([depth_error_in_view(mapper.store["means"], loader.load(n)) for n in sorted(held_out)])
    assert errors.size > 100_000  # the held-out views really overlap the map
    median = float(np.median(errors))
    print(f"held-out median |map depth - observed depth| = {median * 1000:.1f} mm over {errors.size} pixels")
    assert median <= 0.02


def _aruco_messages():
    from rosbags.highlevel import AnyReader

    with AnyReader([ARUCO]) as reader:
        out = {}
        for conn, _, raw in reader.messages():
            out.setdefault(conn.topic, reader.deserialize(raw, conn.msgtype))
        return out


@needs_aruco
def test_aruco_bag_jpeg_and_distorted_camera_info_decode_and_undistort():
    msgs = _aruco_messages()
    image_msg = msgs["/raspicam_node/image/compressed"]
    model = camera_model_from_info(msgs["/raspicam_node/camera_info"])
    rgb = decode_compressed_color(image_msg)
    assert "jpeg" in image_msg.format.lower() or "jpg" in image_msg.format.lower()
    assert rgb.shape == (960, 1280, 3) and rgb.dtype == np.uint8
    assert (model.intrinsics.width, model.intrinsics.height) == (1280, 960)
    assert model.distortion_model == "plumb_bob" and model.is_distorted

    undistorted = model.undistort(rgb)
    # where the distortion model sends undistorted pixels p_u, the raw image holds what the
    # undistorted image shows at p_u
    K = model.intrinsics.K
    uu, vv = np.meshgrid(np.linspace(200, 1080, 23), np.linspace(150, 810, 17))
    p_u = np.stack([uu.ravel(), vv.ravel()], axis=1)
    rays = cv2.undistortPoints(p_u.reshape(-1, 1, 2), K, None).reshape(-1, 2)
    rays3 = np.concatenate([rays, np.ones((len(rays), 1))], axis=1)
    p_d = cv2.projectPoints(rays3, np.zeros(3), np.zeros(3), K, model.D)[0].reshape(-1, 2)
    assert np.max(np.linalg.norm(p_d - p_u, axis=1)) > 2.0  # the lens really distorts here

    def sample(img: np.ndarray, p: np.ndarray) -> np.ndarray:
        mx, my = p[:, 0].astype(np.float32).reshape(1, -1), p[:, 1].astype(np.float32).reshape(1, -1)
        return cv2.remap(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), mx, my, cv2.INTER_LINEAR).astype(float).ravel()

    consistent = np.abs(sample(undistorted, p_u) - sample(rgb, p_d)).mean()
    unrelated = np.abs(sample(rgb, p_u) - sample(rgb, p_d)).mean()
    assert consistent < 4.0 and consistent < 0.5 * unrelated, (consistent, unrelated)
    assert np.allclose(model.undistort_points(p_d), p_u, atol=0.05)


@needs_aruco
def test_replaying_the_aruco_bag_explains_what_is_missing(tmp_path):
    from langgs_ros.errors import InputError
    from langgs_ros.pipeline import replay

    config = PipelineConfig()
    config.input.color_topic = "/raspicam_node/image"
    config.input.camera_info_topic = "/raspicam_node/camera_info"
    with pytest.raises(InputError, match="no camera poses"):
        replay(ARUCO, tmp_path / "m", "none", config)


@needs_shelf
def test_plane_sweep_depth_agrees_with_the_sensor_on_real_frames():
    """Color-only depth (issue 5, item 3) from the four previous frames vs the real depth camera
    (coverage after the first estimate, which has no earlier depth map to agree with)."""
    reader = FrameFolderReader(SHELF)
    frames = [reader.load(n) for n in reader.names[20:30]]
    sweep = PlaneSweepDepth(PlaneSweepConfig())
    errors, covered = [], []
    for frame in frames:
        depth = sweep.estimate(frame)
        sweep.observe(frame)
        if depth is None:
            continue
        sensor = np.isfinite(frame.depth)
        ok = np.isfinite(depth) & sensor
        covered.append(ok.sum() / sensor.sum())
        errors.append(np.abs(depth[ok] - frame.depth[ok]))
    err = np.concatenate(errors)
    print(f"plane sweep vs sensor: median {np.median(err) * 1000:.1f} mm, p90 {np.percentile(err, 90) * 1000:.1f} mm, "
          f"{np.mean(covered[1:]):.0%} of the sensor's pixels")
    assert len(errors) >= 5 and covered[0] == 0 and np.mean(covered[1:]) > 0.10
    assert np.median(err) <= 0.015 and np.percentile(err, 90) <= 0.10


@needs_shelf
def test_refinement_on_real_frames_is_judged_on_held_out_frames_and_does_not_make_them_worse(tmp_path):
    """`langgs replay --refine` as a user runs it, on a small budget: its last line gives the
    held-out figures, and refinement is kept only where it did not make them worse."""
    import re
    import subprocess
    import sys

    (tmp_path / "refine.yaml").write_text("refine: {iterations: 10}\n")
    run = subprocess.run([sys.executable, "-m", "langgs_ros", "replay", str(SHELF), "--out", str(tmp_path / "map"),
                          "--semantics", "none", "--refine", "--config", str(tmp_path / "refine.yaml")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert any(line.startswith("[replay] refine iteration 10/10: loss ") for line in lines), lines  # progress
    m = re.fullmatch(r"refine: held-out PSNR ([\d.]+) -> ([\d.]+) dB, depth error ([\d.]+) -> ([\d.]+) m over (\d) views, "
                     r"10 iterations in [\d.]+ s", lines[-1])
    assert m, lines[-1]
    psnr_before, psnr_after, depth_before, depth_after, views = map(float, m.groups())
    assert views == 3  # every 4th non-keyframe held out, the newest 3 kept
    assert psnr_after >= psnr_before and depth_after <= depth_before, lines[-1]
    assert (tmp_path / "map" / "map.npz").is_file()


@needs_shelf
@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_real_frames_recorded_as_realsense_does_map_like_the_frame_folder(tmp_path, codec):
    """The shelf's real frames written as realsense-ros and image_transport record them (compressedDepth
    only) and replayed with ``--camera realsense`` give the frame folder's map: the depth codec and the
    TF chain lose nothing."""
    bag, frames = realsense_bag_from_frames(SHELF, tmp_path / "bag", depth_codec=codec)
    reference = replay(SHELF, tmp_path / "folder_map", "none", PipelineConfig())
    config = PipelineConfig()
    apply_preset(config.input, "realsense")
    summary = replay(bag, tmp_path / "bag_map", "none", config)
    assert summary.source.frames_used == frames == reference.source.frames_used
    assert summary.keyframes == reference.keyframes > 5
    assert abs(summary.gaussians - reference.gaussians) <= 0.01 * reference.gaussians
