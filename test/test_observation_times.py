"""Time in answers (issue 17): when each object was first and last observed, ``max_age_s``, and
maps saved before the keyframe stamps were kept."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from langgs_ros.config import MappingConfig, QueryConfig
from langgs_ros.mapping.fusion import CodebookField
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.keyframe_log import KeyframeLog, SeenTimes
from langgs_ros.mapping.map_io import MapData, load_map, save_map
from langgs_ros.query.engine import QueryEngine
from langgs_ros.semantics.oracle import TokenTextEncoder

S = 1_000_000_000  # ns per second


def test_first_seen_follows_from_ids_and_last_seen_from_keyframe_indices():
    log = KeyframeLog()
    for k, (stamp, first_uid) in enumerate([(10, 0), (12, 100), (15, 100), (20, 250)]):
        assert log.append(np.eye(4), stamp * S, first_uid) == k
    # Gaussians 120 and 300: created by keyframes 2 (ids 100..249; keyframe 1 created none) and 3
    assert log.seen(np.array([120, 300]), np.array([2, 3])) == SeenTimes(first_ns=15 * S, last_ns=20 * S)
    assert log.seen(np.array([5]), np.array([1])) == SeenTimes(first_ns=10 * S, last_ns=12 * S)
    assert log.seen(np.array([5]), np.array([-1])) is None  # never confirmed since the log began
    assert SeenTimes(10 * S, 12 * S).age_s(20 * S) == pytest.approx(8.0)
    assert SeenTimes(10 * S, 12 * S).age_s(11 * S) == 0.0
    assert KeyframeLog(times_known=False).seen(np.array([1]), np.array([0])) is None


def _two_mugs() -> MapData:
    """A codebook map with two 'mug' blobs: one created at keyframe 0 and last confirmed at 1, one
    created at keyframe 2 and confirmed at 3 (keyframes at 100, 101, 130, 131 s)."""
    encoder = TokenTextEncoder(64)
    field = CodebookField(64, MappingConfig())
    field.load_state({"codebook_prototypes": encoder.encode(["mug"]).astype(np.float32),
                      **{f"track_counts_{lv}": np.zeros((0, 256), np.int32) for lv in ("subpart", "part", "whole")}})
    gmap = GaussianMap()
    field.attach(gmap)
    gmap.enable_uids()
    log = KeyframeLog()
    rng = np.random.default_rng(0)
    for x, (created, confirmed) in zip([0.0, 1.5], [(0, 1), (2, 3)]):
        while len(log) <= created:
            log.append(np.eye(4), [100, 101, 130, 131][len(log)] * S, gmap.next_uid)
        idx = gmap.append(means=(np.array([x, 0.0, 0.5]) + rng.uniform(-0.04, 0.04, (200, 3))).astype(np.float32),
                          quats=np.tile([1, 0, 0, 0], (200, 1)).astype(np.float16))
        gmap["codes"][idx] = 0
        gmap["last_seen"][idx] = confirmed
    log.append(np.eye(4), 131 * S, gmap.next_uid)
    return MapData.of_gaussians(gmap, field, semantics="oracle", keyframes=log)


def test_answers_say_when_objects_were_seen_and_max_age_ignores_old_ones():
    engine = QueryEngine(_two_mugs(), QueryConfig(), TokenTextEncoder(64))
    result = engine.query("mug")
    assert len(result.objects) == 2, result.message
    by_x = sorted(result.objects, key=lambda o: o.centroid[0])
    assert by_x[0].seen == SeenTimes(first_ns=100 * S, last_ns=101 * S) and by_x[0].age_s == pytest.approx(30.0)
    assert by_x[1].seen == SeenTimes(first_ns=130 * S, last_ns=131 * S) and by_x[1].age_s == 0.0
    js = by_x[0].to_json(10)
    assert (js["first_seen"], js["last_seen"], js["age_s"]) == (100.0, 101.0, 30.0)

    recent = engine.query("mug", max_age_s=10.0)  # as of the newest keyframe (131 s)
    assert [o.centroid[0] for o in recent.objects] == [pytest.approx(by_x[1].centroid[0], abs=0.05)]
    assert "1 more not seen in the last 10 s ignored" in recent.message
    later = engine.query("mug", max_age_s=10.0, now_ns=200 * S)  # the node's clock, long after
    assert not later.objects and later.answered and "none was seen in the last 10 s" in later.message
    assert "the newest 69.0 s ago" in later.message
    for bad in (-1.0, float("nan"), float("inf")):
        assert not engine.query("mug", max_age_s=bad).answered


def test_keyframe_times_survive_save_and_load(tmp_path):
    data = _two_mugs()
    save_map(tmp_path, data)
    back = load_map(tmp_path)
    assert back.keyframes.stamps_ns == data.keyframes.stamps_ns and back.notes == []
    assert back.keyframes.first_uids == data.keyframes.first_uids
    result = QueryEngine(back, QueryConfig(), TokenTextEncoder(64)).query("mug", max_age_s=10.0)
    assert len(result.objects) == 1 and result.objects[0].seen.last_ns == 131 * S


def as_legacy_map(map_dir, version):
    """Rewrite a saved map as map formats 1 and 2 wrote it: every Gaussian in ``map.npz`` (``g_``
    arrays), no block files; version 1 also without keyframe stamps or ids."""
    snapshot = load_map(map_dir).store.snapshot()
    file = map_dir / "map.npz"
    with np.load(file) as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith("block_")}
    meta = json.loads(arrays["meta_json"].tobytes().decode())
    meta["version"] = version
    for key in ("block_size_m", "next_uid", "fields", "block_files"):
        del meta[key]
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    arrays.update({f"g_{name}": arr for name, arr in snapshot.to_arrays().items()})
    if version == 1:
        del arrays["keyframe_stamps_ns"], arrays["keyframe_first_uids"]
    np.savez(file, **arrays)
    shutil.rmtree(map_dir / "blocks")


def test_a_format_1_map_loads_with_times_unknown_and_says_so(tmp_path):
    save_map(tmp_path, _two_mugs())
    as_legacy_map(tmp_path, 1)
    old = load_map(tmp_path)
    assert not old.keyframes.times_known and len(old.keyframes) == 4
    assert any("no observation times" in note for note in old.notes)
    engine = QueryEngine(old, QueryConfig(), TokenTextEncoder(64))
    result = engine.query("mug")
    assert len(result.objects) == 2 and all(o.seen is None and o.age_s is None for o in result.objects)
    assert result.objects[0].to_json(10)["last_seen"] is None
    refused = engine.query("mug", max_age_s=5.0)
    assert not refused.answered and "no observation times" in refused.message
    # saved again, it is a block-stored map that still says its times are unknown
    save_map(tmp_path / "again", old)
    assert not load_map(tmp_path / "again").keyframes.times_known


def test_a_format_2_map_loads_into_blocks_answers_the_same_and_saves_as_format_3(tmp_path):
    save_map(tmp_path / "new", _two_mugs())
    expected = QueryEngine(load_map(tmp_path / "new"), QueryConfig(), TokenTextEncoder(64)).query("mug")
    save_map(tmp_path / "old", _two_mugs())
    as_legacy_map(tmp_path / "old", 2)
    old = load_map(tmp_path / "old")
    assert old.keyframes.times_known and any("format 2" in note for note in old.notes)
    answer = QueryEngine(old, QueryConfig(), TokenTextEncoder(64)).query("mug")
    assert [o.uids.tolist() for o in answer.objects] == [o.uids.tolist() for o in expected.objects]
    save_map(tmp_path / "old", old)  # in place: the same directory now holds a format-3 map
    again = load_map(tmp_path / "old")
    assert not again.notes and len(again.store) == len(old.store) and (tmp_path / "old" / "blocks").is_dir()


def test_a_corrupt_keyframe_log_is_a_map_file_error(tmp_path):
    from langgs_ros.errors import MapFileError

    save_map(tmp_path, _two_mugs())
    file = tmp_path / "map.npz"
    with np.load(file) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["keyframe_stamps_ns"] = arrays["keyframe_stamps_ns"][:2]
    np.savez(file, **arrays)
    with pytest.raises(MapFileError, match="4 keyframe poses but 2 stamps"):
        load_map(tmp_path)
