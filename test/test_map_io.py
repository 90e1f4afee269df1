"""Map persistence: round trip, atomic replacement, corruption detection, blocks on disk."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.config import MappingConfig
from langgs_ros.errors import MapFileError, OutputError
from langgs_ros.mapping.fusion import create_field
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.map_io import MapData, load_map, save_map


def small_gaussians(fusion="codebook"):
    gm = GaussianMap()
    field = create_field(fusion, 8, MappingConfig(codebook_size=4))
    field.attach(gm)
    gm.append(means=np.arange(30, dtype=np.float32).reshape(10, 3), colors=np.full((10, 3), 7, np.uint8))
    if fusion == "codebook":
        field.codebook.assign(np.eye(8, dtype=np.float32)[:2])
        field.track_counts = [np.array([[3, 0, 0, 0], [0, 2, 0, 0]], np.int32)] * 3
        gm["tracks"][:5] = 1
        gm["codes"][:5] = 1
    return gm, field


def small_map(fusion="codebook"):
    return MapData.of_gaussians(*small_gaussians(fusion), semantics="oracle", fixed_frame="world")


@pytest.mark.parametrize("fusion", ["codebook", "average"])
def test_round_trip(tmp_path, fusion):
    data = small_map(fusion)
    save_map(tmp_path / "m", data)
    back = load_map(tmp_path / "m")
    assert back.fixed_frame == "world" and back.semantics == "oracle" and back.field.mode == fusion
    assert not any(b.resident for b in back.store.blocks)  # blocks are read when needed
    for name in data.store.fields:
        assert np.array_equal(back.store[name], data.store[name]), name
    # the loaded map keeps growing with the right fill values
    back.store.append(means=np.zeros((1, 3), np.float32))
    if fusion == "codebook":
        assert back.store["tracks"][-1].tolist() == [-1, -1, -1]
        assert back.store["codes"][-1].tolist() == [-1, -1, -1]
        assert np.array_equal(back.field.track_codes(0, np.array([0, 1])), [0, 1])


def test_the_floor_under_the_robot_is_saved_and_older_maps_have_none(tmp_path):
    data = small_map()
    data.floor_z = -0.02
    save_map(tmp_path / "with", data)
    assert load_map(tmp_path / "with").floor_z == pytest.approx(-0.02)
    data.floor_z = None  # as maps written before the field existed, or without a base frame
    save_map(tmp_path / "without", data)
    assert load_map(tmp_path / "without").floor_z is None


def test_failed_save_keeps_the_previous_map(tmp_path, monkeypatch):
    save_map(tmp_path, small_map())
    before = (tmp_path / "map.npz").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OutputError, match="previous map is kept"):
        save_map(tmp_path, small_map("average"))
    assert (tmp_path / "map.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.startswith(".")) == []  # no temp file left behind


def test_truncated_garbage_and_inconsistent_maps_fail_clearly(tmp_path):
    save_map(tmp_path, small_map())
    good = (tmp_path / "map.npz").read_bytes()
    for bad in (good[: len(good) // 3], b"not a zip at all", good[:-200]):
        (tmp_path / "map.npz").write_bytes(bad)
        with pytest.raises(MapFileError):
            load_map(tmp_path)
    gm, field = small_gaussians()
    gm["tracks"][0] = 99  # a track the field does not know
    save_map(tmp_path, MapData.of_gaussians(gm, field))
    with pytest.raises(MapFileError, match="inconsistent"):
        load_map(tmp_path).store.load_all()  # blocks are checked when read
    gm, field = small_gaussians()
    gm["codes"][0] = 7  # a prototype the codebook does not hold
    save_map(tmp_path, MapData.of_gaussians(gm, field))
    with pytest.raises(MapFileError, match="inconsistent"):
        load_map(tmp_path).store.load_all()
    block = tmp_path / "blocks" / load_map(tmp_path).store.blocks[0].file  # a block file cut short
    block.write_bytes(block.read_bytes()[:100])
    with pytest.raises(MapFileError, match="corrupt or truncated"):
        load_map(tmp_path)
    with pytest.raises(MapFileError, match="no map"):
        load_map(tmp_path / "missing")


def test_a_save_removes_temporaries_left_by_a_killed_writer(tmp_path):
    save_map(tmp_path, small_map())
    orphan = tmp_path / ".map-abc123.npz.tmp"  # what kill -9 during np.savez leaves
    orphan.write_bytes(b"\0" * 1000)
    save_map(tmp_path, small_map())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks", "map.npz"]


@pytest.mark.parametrize("what", ["means", "scales", "quats"])
def test_a_map_with_non_finite_geometry_is_refused(tmp_path, what):
    gm, field = small_gaussians()
    data = MapData.of_gaussians(gm, field)
    blk = data.store.blocks[0]
    blk.gaussians[what][0, 0] = np.inf if what != "means" else np.nan
    save_map(tmp_path, data)
    with pytest.raises(MapFileError, match=f"non-finite {what}"):
        load_map(tmp_path).store.load_all()


def _add_member(npz_path, name, header_shape, payload=b""):
    """Append an array member whose .npy header declares ``header_shape`` (float64) but holds only
    ``payload`` bytes: what a forged or damaged file looks like."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": header_shape})
    with zipfile.ZipFile(npz_path, "a") as zf:
        zf.writestr(name + ".npy", buf.getvalue() + payload)


def test_load_reads_only_the_format_and_checks_declared_sizes(tmp_path):
    save_map(tmp_path, small_map())
    file = tmp_path / "map.npz"
    # an array that is not part of the format is never read, however large it claims to be
    _add_member(file, "junk", (1_000_000_000,))
    assert len(load_map(tmp_path).store) == 10
    # a per-Gaussian array must have one row per Gaussian of the metadata
    save_map(tmp_path, small_map())
    _add_member(file, "g_extra", (1_000_000_000, 3))
    with pytest.raises(MapFileError, match="g_extra"):
        load_map(tmp_path)
    # a map-level array that declares more bytes than it holds is truncated, and is not allocated
    save_map(tmp_path, small_map())
    _add_member(file, "s_huge", (1_000_000_000,), b"\0" * 64)
    with pytest.raises(MapFileError, match="truncated"):
        load_map(tmp_path)
