"""Bad input gives a clear message and a non-zero exit, never a traceback (issue 2, item 10)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "langgs_ros", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error:" in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_good_small_bag_builds_a_geometry_map(small_bag, tmp_path):
    proc = run_cli("replay", small_bag(), "--out", tmp_path / "map", "--semantics", "none")
    assert proc.returncode == 0, proc.stderr
    assert "4/4 frames used" in proc.stderr
    query = run_cli("query", tmp_path / "map", "mug", "--json")  # a map without semantics cannot answer: exit 2
    assert query.returncode == 2 and '"objects": []' in query.stdout and "no semantics" in query.stdout


def test_unknown_color_encoding(small_bag, tmp_path):
    proc = run_cli("replay", small_bag(color_encoding="yuv422"), "--out", tmp_path / "m", "--semantics", "none")
    assert_clean_failure(proc, "no usable frames", "unsupported color encoding 'yuv422'")


def test_missing_camera_info(small_bag, tmp_path):
    proc = run_cli("replay", small_bag(camera_info=False), "--out", tmp_path / "m", "--semantics", "none")
    assert_clean_failure(proc, "CameraInfo")


def test_missing_poses(small_bag, tmp_path):
    proc = run_cli("replay", small_bag(tf=False), "--out", tmp_path / "m", "--semantics", "none")
    assert_clean_failure(proc, "no camera poses")


def test_color_only_bag_maps_with_stereo_depth(small_bag, tmp_path):
    proc = run_cli("replay", small_bag(depth=False, frames=6), "--out", tmp_path / "m", "--semantics", "none")
    assert proc.returncode == 0, proc.stderr
    # the first frame has no earlier view to match against: counted and reported, not used
    assert "no earlier view with enough baseline" in proc.stderr


def test_replay_with_refinement_reports_its_iterations(small_bag, tmp_path):
    config = tmp_path / "refine.json"
    config.write_text('{"refine": {"iterations": 3, "scale": 1.0}}')
    proc = run_cli("replay", small_bag(frames=4), "--out", tmp_path / "m", "--semantics", "none",
                   "--config", config, "--refine")
    assert proc.returncode == 0, proc.stderr
    assert "[replay] refine iteration 3/3: loss " in proc.stderr and (tmp_path / "m" / "map.npz").exists()
    last = proc.stderr.strip().splitlines()[-1]  # every frame became a keyframe: nothing to judge on, and it says so
    assert last.startswith("refine: no held-out views") and ", 3 iterations in " in last, last


def test_empty_bag(tmp_path):
    from langgs_ros.io.bag_writer import BagWriter

    with BagWriter(tmp_path / "empty"):
        pass
    proc = run_cli("replay", tmp_path / "empty", "--out", tmp_path / "m", "--semantics", "none")
    assert_clean_failure(proc, "no topics")


def test_missing_bag(tmp_path):
    assert_clean_failure(run_cli("replay", tmp_path / "nope", "--out", tmp_path / "m", "--semantics", "none"),
                         "does not exist")


def test_corrupt_bag(small_bag, tmp_path):
    bag = small_bag()
    data_file = next(bag.glob("*.mcap"))
    data_file.write_bytes(b"\x00garbage" * 100)
    proc = run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none")
    assert_clean_failure(proc)
    assert "bag" in proc.stderr


def test_a_bag_cut_in_half_is_mapped_from_what_it_holds_and_says_so(small_bag, tmp_path):
    bag = small_bag()
    data_file = next(bag.glob("*.mcap"))
    raw = data_file.read_bytes()
    data_file.write_bytes(raw[: len(raw) // 2])  # a recording killed midway (test_recordings: the details)
    proc = run_cli("replay", bag, "--out", tmp_path / "m", "--semantics", "none")
    assert proc.returncode == 0, proc.stderr
    assert "is not closed (an interrupted recording or copy)" in proc.stderr
    assert (tmp_path / "m" / "map.npz").exists()


def test_oracle_needs_instances(small_bag, tmp_path):
    proc = run_cli("replay", small_bag(), "--out", tmp_path / "m", "--semantics", "oracle")
    assert_clean_failure(proc, "/camera/instances")


def test_default_semantics_is_the_real_backend_and_needs_its_weights(small_bag, tmp_path):
    # the default is SAM 2 + OpenCLIP, never the oracle; without weights it stops at start-up
    home = str(tmp_path / "home")  # an empty home: no cached weights
    proc = run_cli("replay", small_bag(), "--out", tmp_path / "m",
                   env={**os.environ, "HOME": home, "HF_HOME": home, "XDG_CACHE_HOME": home})
    assert_clean_failure(proc, "weights", "langgs models")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_corrupt_map(small_bag, tmp_path, damage):
    assert run_cli("replay", small_bag(), "--out", tmp_path / "map", "--semantics", "none").returncode == 0
    map_file = tmp_path / "map" / "map.npz"
    if damage == "missing":
        map_file.unlink()
    else:
        raw = map_file.read_bytes()
        map_file.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"PK\x03\x04" + b"x" * 500)
    assert_clean_failure(run_cli("query", tmp_path / "map", "mug"), "map")


def test_bad_config_file(small_bag, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mapping: {pixel_strid: 3}\n")
    proc = run_cli("replay", small_bag(), "--out", tmp_path / "m", "--semantics", "none", "--config", cfg)
    assert_clean_failure(proc, "pixel_strid")


def test_replay_failure_keeps_an_existing_map(small_bag, tmp_path):
    assert run_cli("replay", small_bag("good"), "--out", tmp_path / "map", "--semantics", "none").returncode == 0
    before = (tmp_path / "map" / "map.npz").read_bytes()
    proc = run_cli("replay", small_bag("bad", camera_info=False), "--out", tmp_path / "map", "--semantics", "none")
    assert proc.returncode == 2
    assert (tmp_path / "map" / "map.npz").read_bytes() == before
    shutil.rmtree(tmp_path / "map")


def test_query_text_is_cleaned_before_it_is_echoed(oracle_map):
    import json

    proc = run_cli("query", oracle_map, "red\x1b[2J\x1b[31m mug\x07")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "query: 'red [2J [31m mug'" in proc.stdout
    raw = subprocess.run([sys.executable, "-m", "langgs_ros", "query", str(oracle_map), b"m\xffug\xc3", "--json"],
                         capture_output=True, timeout=300)
    assert raw.returncode == 0, raw.stderr
    answer = json.loads(raw.stdout)
    assert answer["query"] == "m\ufffdug\ufffd" and "\\ud" not in raw.stdout.decode()
