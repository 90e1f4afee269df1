"""Property test (issue 14, item 10): bags whose fields are drawn at random (encodings, sizes, K, D,
poses, stamps, byte flips) never make ``langgs replay`` print a traceback or an internal error,
and never produce a map with non-finite geometry."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from langgs_ros.cli import main
from langgs_ros.geometry import make_transform
from langgs_ros.io.bag_writer import BagWriter
from langgs_ros.mapping.map_io import load_map

CASES = int(os.environ.get("LANGGS_FUZZ_CASES", "24"))


def random_bag(path: Path, rng: np.random.Generator) -> Path:
    """A small bag with randomly chosen defects (or none)."""
    frames = int(rng.integers(1, 5))
    w, h = int(rng.choice([1, 16, 32, 64], p=[0.1, 0.2, 0.2, 0.5])), int(rng.choice([1, 12, 24, 48], p=[0.1, 0.2, 0.2, 0.5]))
    info_w, info_h = (w, h) if rng.random() < 0.85 else (int(rng.integers(1, 80)), int(rng.integers(1, 60)))
    f = float(rng.choice([40.0, 0.0, -3.0, 1e-9, 1e12, np.nan, np.inf, 30.0], p=[0.5, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.2]))
    K = np.array([[f, 0, info_w / 2], [0, abs(f) if rng.random() < 0.8 else 5.0, info_h / 2], [0, 0, 1]])
    if rng.random() < 0.1:
        K[0, 2] = 1e9
    model = str(rng.choice(["plumb_bob", "rational_polynomial", "equidistant", "weird", ""]))
    D = rng.normal(0, 0.05, int(rng.choice([0, 1, 3, 4, 5, 6, 8, 20]))) if rng.random() < 0.3 else np.zeros(5)
    encoding = str(rng.choice(["rgb8", "bgr8", "mono8", "rgba8", "yuv422", "16UC1"], p=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1]))
    depth_kind = str(rng.choice(["16UC1", "32FC1", "none", "nan", "8UC1"], p=[0.4, 0.3, 0.1, 0.1, 0.1]))
    pose_kind = str(rng.choice(["good", "zero", "scaled", "nan", "missing"], p=[0.7, 0.075, 0.075, 0.075, 0.075]))
    stamps = np.sort(rng.integers(1, 10, frames)) if rng.random() < 0.3 else np.arange(1, frames + 1)
    t0 = 1_000_000_000_000
    with BagWriter(path) as bag:
        if pose_kind != "missing":
            bag.write("/tf_static", bag.tf_message([bag.transform("base", "cam", np.eye(4), t0)]), t0)
        for i, s in enumerate(stamps):
            stamp = t0 + int(s) * 100_000_000
            pose = make_transform(np.eye(3), [0.2 * i, 0, 0])
            if pose_kind == "zero":
                pose = np.zeros((4, 4))
            elif pose_kind == "scaled":
                pose[:3, :3] *= 100
            elif pose_kind == "nan":
                pose[0, 3] = np.nan
            if pose_kind != "missing":
                try:
                    tf = [bag.transform("map", "base", pose, stamp + d) for d in (-10_000_000, 10_000_000)]
                except ValueError:  # a pose the TF message itself cannot hold (zero rotation)
                    tf = []
                for t in tf:
                    bag.write("/tf", bag.tf_message([t]), t.header.stamp.sec * 10**9 + t.header.stamp.nanosec)
            bag.write("/camera/color/camera_info", bag.camera_info(K, info_w, info_h, stamp, "cam", D=D, model=model),
                      stamp)
            channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "yuv422": 2, "16UC1": 1}[encoding]
            dtype = np.uint16 if encoding == "16UC1" else np.uint8
            img = rng.integers(0, 255, (h, w, channels)).astype(dtype)
            bag.write("/camera/color/image_raw", bag.image(img if channels > 1 else img[..., 0], encoding, stamp, "cam"),
                      stamp)
            if depth_kind == "16UC1":
                bag.write("/camera/aligned_depth_to_color/image_raw",
                          bag.image(rng.integers(0, 5000, (h, w)).astype(np.uint16), "16UC1", stamp, "cam"), stamp)
            elif depth_kind in ("32FC1", "nan"):
                d = np.full((h, w), np.nan, np.float32) if depth_kind == "nan" else \
                    rng.uniform(0.2, 4, (h, w)).astype(np.float32)
                bag.write("/camera/aligned_depth_to_color/image_raw", bag.image(d, "32FC1", stamp, "cam"), stamp)
            elif depth_kind == "8UC1":
                bag.write("/camera/aligned_depth_to_color/image_raw",
                          bag.image(np.ones((h, w), np.uint8), "8UC1", stamp, "cam"), stamp)
    if rng.random() < 0.25:  # flip bytes
        data = next(path.glob("*.mcap"))
        raw = bytearray(data.read_bytes())
        for pos in rng.integers(0, len(raw), int(rng.integers(1, 20))):
            raw[pos] ^= int(rng.integers(1, 256))
        data.write_bytes(bytes(raw))
    return path


def run(*argv: str) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        rc = main(list(argv))
    return rc, err.getvalue() + out.getvalue()


@pytest.mark.parametrize("seed", range(CASES))
def test_random_bags_never_crash_or_write_a_non_finite_map(tmp_path, seed):
    rng = np.random.default_rng(seed)
    bag = random_bag(tmp_path / "bag", rng)
    rc, text = run("replay", str(bag), "--out", str(tmp_path / "map"), "--semantics", "none")
    assert rc in (0, 2), text
    assert "Traceback" not in text and "internal error" not in text, text
    if rc == 2:
        assert "error:" in text
        return
    data = load_map(tmp_path / "map")  # refuses non-finite geometry itself; check anyway
    for name in ("means", "scales", "quats"):
        assert np.isfinite(data.store[name]).all(), name
    rc, text = run("query", str(tmp_path / "map"), "mug", "--png", str(tmp_path / "top.png"))
    # a geometry-only map cannot answer a text (exit 2, said why); the picture is drawn all the same
    assert rc == 2 and "no semantics" in text and "Traceback" not in text, text
    assert (tmp_path / "top.png").read_bytes()[:4] == b"\x89PNG"
