"""Never silent about the data (issue 33): every replay says what it uses and what it does not, a
depth topic under another name is an error naming it, suspicious poses and stamps are skipped with
their reason, nothing is written over an input, and input faults exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_cli_bad_input import assert_clean_failure, run_cli

REALSENSE_DEPTH = "/camera/camera/aligned_depth_to_color/image_raw"


def test_every_replay_reports_what_it_uses_and_what_it_does_not(small_bag, tmp_path):
    bag = small_bag(path_topic="/slam/path")
    proc = run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none")
    assert proc.returncode == 0, proc.stderr
    data = [line for line in proc.stderr.splitlines() if line.startswith("[data]")]
    assert any(line.startswith("[data] color: /camera/color/image_raw (sensor_msgs/Image, 4 messages)") for line in data)
    assert any(line.startswith("[data] depth: /camera/aligned_depth_to_color/image_raw") for line in data)
    # a SLAM trajectory nobody configured is named with the setting that would use it
    assert any("not used: /slam/path (nav_msgs/Path" in line and "--pose-graph-topic" in line for line in data)
    assert any("TF: 'map' -> 'cam_optical'" in line and "found" in line for line in data)


def test_a_depth_topic_under_another_name_is_an_error_naming_it_and_the_flag(small_bag, tmp_path):
    bag = small_bag(depth_topic=REALSENSE_DEPTH)  # realsense-ros' default namespace
    proc = run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none")
    assert_clean_failure(proc, REALSENSE_DEPTH, "--depth-topic")
    assert not (tmp_path / "m" / "map.npz").exists()  # refused before any mapping
    ok = run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none", "--depth-topic", REALSENSE_DEPTH)
    assert ok.returncode == 0 and "4/4 frames used" in ok.stderr, ok.stderr
    preset = run_cli("replay", bag, "--out", tmp_path / "p", "--semantics", "none", "--camera", "realsense",
                     "--color-topic", "/camera/color/image_raw", "--camera-info-topic", "/camera/color/camera_info")
    assert preset.returncode == 0 and f"[data] depth: {REALSENSE_DEPTH}" in preset.stderr, preset.stderr
    # color only only when asked for, and said so
    color_only = run_cli("replay", small_bag("b2", frames=6, depth_topic=REALSENSE_DEPTH), "--out", tmp_path / "c",
                         "--semantics", "none", "--depth-topic", "")
    assert color_only.returncode == 0 and "input.depth_topic is empty: color only" in color_only.stderr


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_depth_recorded_as_compressed_depth_is_read(small_bag, tmp_path, codec):
    raw = run_cli("replay", small_bag("raw_bag"), "--out", tmp_path / "raw", "--semantics", "none")
    proc = run_cli("replay", small_bag("cd_bag", compressed_depth=codec), "--out", tmp_path / "cd", "--semantics", "none")
    assert proc.returncode == 0 and "image_transport compressedDepth" in proc.stderr, proc.stderr
    from langgs_ros.mapping.map_io import load_map

    a, b = load_map(tmp_path / "raw").store, load_map(tmp_path / "cd").store
    assert raw.returncode == 0 and len(a) == len(b) > 0  # the same map from the same depth
    assert np.allclose(np.sort(a["means"][:, 2]), np.sort(b["means"][:, 2]), atol=1e-4)


def test_a_tf_sample_far_off_is_skipped_not_mapped(small_bag, tmp_path):
    proc = run_cli("replay", small_bag(frames=6, tf_ghost_at=3), "--out", tmp_path / "m", "--semantics", "none")
    assert proc.returncode == 0, proc.stderr
    assert "5/6 frames used" in proc.stderr and "camera pose jumps" in proc.stderr
    from langgs_ros.mapping.map_io import load_map

    means = load_map(tmp_path / "m").store["means"]
    assert np.abs(means).max() < 10  # no ghost 50 km away


def test_broken_stamps_are_reported_and_all_equal_stamps_refused(small_bag, tmp_path):
    repeated = small_bag("rep_bag", frames=5, image_stamp=lambda i, s: s - (i % 2) * 100_000_000)
    proc = run_cli("replay", repeated, "--out", tmp_path / "rep", "--semantics", "none")
    assert proc.returncode == 0 and "repeats the previous image's" in proc.stderr, proc.stderr
    same = small_bag("same_bag", frames=4, image_stamp=lambda i, s: 1_000_100_000_000 + 0 * i)
    assert_clean_failure(run_cli("replay", same, "--out", tmp_path / "same", "--semantics", "none"),
                         "all 4 images have the stamp")


def test_a_frame_folder_with_mixed_image_sizes_skips_the_odd_ones(tmp_path):
    import cv2

    from test_cli_paths import write_frame_folder

    folder = write_frame_folder(tmp_path / "f", frames=3)
    small = cv2.resize(cv2.imread(str(folder / "frame-000001.color.png")), None, fx=0.5, fy=0.5)
    cv2.imwrite(str(folder / "frame-000001.color.png"), small)
    depth = cv2.imread(str(folder / "frame-000001.depth.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(folder / "frame-000001.depth.png"), cv2.resize(depth, None, fx=0.5, fy=0.5,
                                                                    interpolation=cv2.INTER_NEAREST))
    proc = run_cli("replay", folder, "--out", tmp_path / "m", "--semantics", "none")
    assert proc.returncode == 0 and "2/3 frames used" in proc.stderr and "one intrinsics file" in proc.stderr


def test_nothing_is_written_over_an_input(small_bag, tmp_path):
    bag = small_bag()
    assert run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none").returncode == 0
    before = (tmp_path / "m" / "map.npz").read_bytes()
    assert_clean_failure(run_cli("query", tmp_path / "m", "mug", "--png", tmp_path / "m" / "map.npz"), "input")
    assert (tmp_path / "m" / "map.npz").read_bytes() == before
    assert_clean_failure(run_cli("replay", bag, "--out", bag, "--semantics", "none"), "input")
    config = tmp_path / "c.yaml"
    config.write_text("query: {robot_radius: 0.3}\n")
    assert_clean_failure(run_cli("query", tmp_path / "m", "mug", "--config", config, "--png", config), "input")
    assert config.read_text() == "query: {robot_radius: 0.3}\n"


def test_input_faults_exit_2_with_their_reason(small_bag, tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    utf16 = tmp_path / "u16.yaml"
    utf16.write_bytes("mapping: {pixel_stride: 2}\n".encode("utf-16"))
    bag = small_bag()
    for config in (binary, utf16):
        assert_clean_failure(run_cli("replay", bag, "--out", tmp_path / "m", "--config", config), "UTF-8")
    assert_clean_failure(run_cli("synth", "--out", tmp_path / "s", "--seed", "-1"), "--seed")
    assert_clean_failure(run_cli("synth", "--out", tmp_path / "s", "--width", "20000", "--height", "20000"),
                         "max_image_pixels")
    sci = tmp_path / "sci.yaml"
    sci.write_text("input: {sync_tolerance_s: 2e-2}\nmapping: {surface_tolerance: 1.5e-2}\n")
    from langgs_ros.config import load_config

    assert load_config(sci).input.sync_tolerance_s == pytest.approx(0.02)


def test_queries_refused_exit_non_zero_and_several_texts_share_one_start_up(oracle_map):
    proc = run_cli("query", oracle_map, "mug", "--max-age", "-1")
    assert proc.returncode == 2 and "max_age_s" in proc.stderr
    proc = run_cli("query", oracle_map, "red mug", "book", "--json", "--max-objects", "1")
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    assert [a["query"] for a in answers] == ["red mug", "book"] and all(len(a["objects"]) == 1 for a in answers)
    assert "\n" not in proc.stdout.strip()  # piped: one line
    assert "\n" in run_cli("query", oracle_map, "book", "--json", "--pretty").stdout.strip()


def test_models_exit_2_and_name_where_they_looked(tmp_path):
    config = tmp_path / "m.yaml"
    config.write_text(f"models: {{sam2_checkpoint: {tmp_path / 'none.pt'}, clip_cache_dir: {tmp_path / 'cache'}}}\n")
    proc = run_cli("models", "--config", config)
    assert proc.returncode == 2 and "MISSING" in proc.stdout
    assert str(tmp_path / "cache") in proc.stdout and "langgs models" not in proc.stdout
