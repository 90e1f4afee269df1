"""Input and output paths: a clear ``error:`` naming the path, checked before the work, and no
file lost or left half written (issue 14, items 2 and 3)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from test_cli_bad_input import assert_clean_failure, run_cli


# -- input paths ------------------------------------------------------------------------------
def write_frame_folder(folder: Path, frames: int = 3, names: list[str] | None = None, fx: float = 50.0,
                       pose_scale: float = 1.0, depth_mm: int = 2000) -> Path:
    """A tiny 7-Scenes style folder (64x48, a wall 2 m ahead)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "camera-intrinsics.txt").write_text(f"{fx} 0 31.5\n0 {fx} 23.5\n0 0 1\n")
    for i, name in enumerate(names or [f"frame-{i:06d}" for i in range(frames)]):
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[..., 1] = 40 * i
        cv2.imwrite(str(folder / f"{name}.color.png"), rgb)
        cv2.imwrite(str(folder / f"{name}.depth.png"), np.full((48, 64), depth_mm, np.uint16))
        pose = np.eye(4)
        pose[0, 3] = 0.2 * i
        pose[:3, :3] *= pose_scale
        np.savetxt(folder / f"{name}.pose.txt", pose)
    return folder


def replay(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("replay", source, "--out", out, "--semantics", "none", *extra)


def test_input_paths_that_are_not_a_bag_or_frame_folder(tmp_path, small_bag):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(replay(empty, tmp_path / "m"), str(empty), "is empty")

    root = tmp_path / "dataset"  # a dataset root: sequences one level down
    write_frame_folder(root / "seq-01")
    shutil.copytree(small_bag("b"), root / "recordings" / "bag1")
    proc = replay(root, tmp_path / "m")
    assert_clean_failure(proc, "seq-01 (frame folder)", "bag1 (bag)", "pass one of them")

    crashed = small_bag("crashed", storage="sqlite3")  # a recorder killed before writing metadata.yaml
    (crashed / "metadata.yaml").unlink()
    assert_clean_failure(replay(crashed, tmp_path / "m"), "no metadata.yaml", "ros2 bag reindex")
    db3 = next(crashed.glob("*.db3"))
    assert_clean_failure(replay(db3, tmp_path / "m"), "ros2 bag reindex")
    # an MCAP bag without it is read from the MCAP data (test_recordings.py), without reindex advice
    crashed_mcap = small_bag("crashed_mcap")
    (crashed_mcap / "metadata.yaml").unlink()
    proc = replay(crashed_mcap, tmp_path / "m_mcap")
    assert proc.returncode == 0 and "rebuilt from the MCAP data" in proc.stderr and "reindex" not in proc.stderr

    file = tmp_path / "notes.txt"
    file.write_text("hello")
    assert_clean_failure(replay(file, tmp_path / "m"), "is a file", "expected")
    assert not (tmp_path / "m").exists(), "nothing may be written for a wrong input"


def test_frame_names_that_do_not_parse(tmp_path):
    odd = write_frame_folder(tmp_path / "odd", names=["frame-[0]", "frame-x1"])
    assert_clean_failure(replay(odd, tmp_path / "m"), "frame-<digits>.color.png", "frame-[0].color.png")
    mixed = write_frame_folder(tmp_path / "mixed", frames=3)
    write_frame_folder(mixed, names=["frame-[7]"])
    proc = replay(mixed, tmp_path / "m2")
    assert proc.returncode == 0, proc.stderr
    assert "3/4 frames used" in proc.stderr and "frame-[7].color.png" in proc.stderr


@pytest.mark.parametrize("size", [8, 40])
def test_a_tiny_mcap_says_what_is_wrong(small_bag, tmp_path, size):
    bag = small_bag()
    data = next(bag.glob("*.mcap"))
    data.write_bytes(data.read_bytes()[:size])
    proc = replay(bag, tmp_path / "m")
    assert_clean_failure(proc, "not a readable MCAP file", data.name)
    assert "ord()" not in proc.stderr


def test_flipped_bytes_in_an_mcap_chunk_skip_its_frames(small_bag, tmp_path):
    bag = small_bag(frames=4)
    data = next(bag.glob("*.mcap"))
    raw = bytearray(data.read_bytes())
    from langgs_ros.io.mcap_check import check_mcap

    report = check_mcap(data)
    assert report.chunks >= 1 and not report.bad_chunks
    i = raw.find(bytes([0xD0, 0x07]) * 32)  # inside a depth image (2000 mm, little-endian)
    assert i > 0
    raw[i + 10:i + 20] = bytes(10)
    data.write_bytes(bytes(raw))
    report = check_mcap(data)
    assert report.chunks == 1 and len(report.bad_chunks) == 1  # our writer adds CRCs, as ros2 bag record does
    proc = replay(bag, tmp_path / "m")  # the only chunk is bad: nothing is mapped from it, and it says why
    assert_clean_failure(proc, "no usable frames", "1 of 1 MCAP chunks failed their integrity check")


# -- output paths -----------------------------------------------------------------------------
@contextlib.contextmanager
def small_mount(path: Path, size: str = "1m", read_only: bool = False):
    """A tmpfs of ``size`` (or read-only) at ``path``; skips where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_out_that_is_a_file_or_read_only(small_bag, tmp_path):
    bag = small_bag()
    file = tmp_path / "file"
    file.write_text("x")
    assert_clean_failure(replay(bag, file), str(file), "is a file")
    with small_mount(tmp_path / "ro", read_only=True) as ro:
        assert_clean_failure(replay(bag, ro / "map"), "read-only file system", str(ro / "map"))


def test_full_disk_during_save_is_a_clean_error_and_keeps_nothing_half_written(tmp_path):
    from conftest import write_small_bag

    bag = write_small_bag(tmp_path / "bag", frames=4)
    with small_mount(tmp_path / "full", size="20k") as full:
        proc = replay(bag, full / "map")
        assert_clean_failure(proc, "no space left", "map")
        assert proc.stderr.count("Traceback") == 0
        assert not list((full / "map").glob(".map-*")), "temporary file left on the full disk"


def test_synth_on_a_full_disk_removes_its_partial_bag(tmp_path):
    with small_mount(tmp_path / "full", size="256k") as full:
        proc = run_cli("synth", "--out", full, "--frames", "5", "--width", "160", "--height", "120")
        assert_clean_failure(proc, "no space left", "partial bag was removed")
        assert not (full / "synth_bag").exists()
    proc = run_cli("synth", "--out", tmp_path / "s", "--frames", "2", "--width", "32", "--height", "24")
    assert proc.returncode == 0, proc.stderr  # the next run is not blocked


def test_query_png_paths(small_bag, tmp_path):
    assert replay(small_bag(), tmp_path / "map").returncode == 0
    missing = tmp_path / "nowhere" / "top.png"
    assert_clean_failure(run_cli("query", tmp_path / "map", "mug", "--png", missing), str(missing), "does not exist")
    folder = tmp_path / "adir"
    folder.mkdir()
    assert_clean_failure(run_cli("query", tmp_path / "map", "mug", "--png", folder), "is a directory")
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*.png*")), "temporary PNG left behind"
    with small_mount(tmp_path / "ro", read_only=True) as ro:
        assert_clean_failure(run_cli("query", tmp_path / "map", "mug", "--png", ro / "top.png"),
                             "read-only file system")
    good = tmp_path / "top.png"
    proc = run_cli("query", tmp_path / "map", "mug", "--png", good)  # a geometry map: drawn, the text refused
    assert proc.returncode == 2 and "no semantics" in proc.stderr, proc.stderr
    assert good.read_bytes()[:4] == b"\x89PNG" and oct(os.stat(good).st_mode & 0o777) == "0o644"


def test_negative_coordinates_are_values_not_flags():
    """``--navigate-from -0.9,-1.5`` (the robot left of the origin) must not read as an unknown flag."""
    from langgs_ros.cli import _attach_negative_xy, build_parser

    args = build_parser().parse_args(_attach_negative_xy(["query", "m", "mug", "--navigate-from", "-0.9,-1.5"]))
    assert tuple(args.navigate_from) == (-0.9, -1.5) and args.text == ["mug"]
    args = build_parser().parse_args(_attach_negative_xy(["synth", "--out", "o", "--move-to", "-.5,0.2"]))
    assert tuple(args.move_to) == (-0.5, 0.2)
    with pytest.raises(SystemExit):  # without the joining, argparse refuses it
        build_parser().parse_args(["query", "m", "mug", "--navigate-from", "-0.9,-1.5"])
