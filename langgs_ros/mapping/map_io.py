"""Saving and loading a semantic Gaussian map: a map directory with a manifest ``map.npz`` and one
file per spatial block under ``blocks/`` (format 3).

The manifest holds the metadata, the keyframe log, the semantic field's map-level state and, per
block, its key, file name, count, bounding box, id range, anchoring keyframes and query summary,
so a loaded map reads no block until a view or a query needs it. Saving writes only the blocks
changed since the store last wrote them (:meth:`BlockStore.persist`), then the manifest atomically
(temporary file, flush, rename): a crash mid-save leaves the previous manifest and every file it
names. Block files are never overwritten (each write has a new name); superseded ones are deleted
one save later, so a reader that opened the previous manifest still finds its blocks.

Loading opens the manifest once and reads everything from that handle; its declared sizes are
checked before anything is allocated, and a truncated, corrupt or inconsistent file gives a
:class:`~langgs_ros.errors.MapFileError`. Maps of formats 1 and 2 (one ``map.npz`` with every
Gaussian) load into blocks in memory; saving writes format 3.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from langgs_ros.config import MappingConfig
from langgs_ros.errors import MapFileError, OutputError
from langgs_ros.io.output_paths import atomic_write, check_output_dir, remove_stale_temporaries
from langgs_ros.mapping.block_files import BlockFiles
from langgs_ros.mapping.block_store import DEFAULT_BLOCK_SIZE_M, BlockStore
from langgs_ros.mapping.fusion import SemanticField, create_field
from langgs_ros.mapping.gaussians import GaussianMap, check_gaussians
from langgs_ros.mapping.keyframe_log import KeyframeLog

__all__ = ["MapData", "save_map", "load_map", "MAP_FILE", "FORMAT_VERSION"]

MAP_FILE = "map.npz"
FORMAT = "langgs_ros.map"
FORMAT_VERSION = 3
"""3: Gaussians in per-block files under ``blocks/``, the manifest lists them (incremental saves,
lazy loading). 2: keyframe stamps, first Gaussian ids (times in answers, anchors), camera mounts
(pose corrections) and, optional, map -> odom per keyframe (re-anchoring). Versions 1 and 2 keep
every Gaussian in ``map.npz``; version 1 maps load with times unknown."""
_READABLE_VERSIONS = (1, 2, 3)
_GAUSS_PREFIX = "g_"
_FIELD_PREFIX = "s_"
_DECODER_PREFIX = "d_"
_KEYFRAME_PREFIX = "keyframe_"
_BLOCK_PREFIX = "block_"
_SUMMARY_PREFIX = "block_summary_"


@dataclass
class MapData:
    """A map as saved: Gaussians in blocks, their semantic field (None: geometry only) and metadata."""

    store: BlockStore
    field: SemanticField | None
    fixed_frame: str = "map"
    semantics: str = "none"
    """Name of the semantic backend that built the map (selects the query text encoder)."""
    keyframes: KeyframeLog = field(default_factory=KeyframeLog)
    """Pose, stamp and first Gaussian id of each keyframe: when each Gaussian was first and last seen."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (config, replay summary)."""
    decoder: dict[str, np.ndarray] = field(default_factory=dict)
    """Weights of semantic refinement's decoder (``Refiner.decoder_state``); empty if none."""
    floor_z: float | None = None
    """Height of the floor under the robot (m, fixed frame) from TF's base frame; None if unknown."""
    notes: list[str] = field(default_factory=list)
    """What loading had to assume (e.g. an older format without observation times)."""

    @classmethod
    def of_gaussians(cls, gmap: GaussianMap, field: SemanticField | None, **kwargs: Any) -> MapData:
        """A map of the Gaussians of one GaussianMap (tests, tools), put into blocks."""
        store = BlockStore.from_gaussians(gmap)
        if field is not None:
            store.summarize = field.summarize
            store.summary_fields = frozenset(field.columns)
        return cls(store=store, field=field, **kwargs)


def _optional_float(value: Any) -> float | None:
    """A finite float from metadata, or None (absent in maps written before the field existed)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _ragged(arrays: list[np.ndarray], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets [len + 1]) of a list of 1-d arrays."""
    offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
    values = np.concatenate(arrays).astype(dtype) if arrays and offsets[-1] else np.zeros(0, dtype)
    return values, offsets


def save_map(path: str | Path, data: MapData) -> Path:
    """Write ``data`` to the map directory ``path`` (blocks, then ``map.npz`` atomically); returns
    the manifest's path. Raises OutputError when the directory cannot be written."""
    directory = check_output_dir(path, "map directory")
    store = data.store
    files = BlockFiles(directory)
    previous = _listed_files(directory / MAP_FILE)
    try:
        names = store.persist(directory)
    except OutputError as exc:
        kept = "; the previous map is kept" if (directory / MAP_FILE).exists() else ""
        raise OutputError(f"{exc}{kept}") from None
    blocks = [store.block(key) for key in names]
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fixed_frame": data.fixed_frame,
        "semantics": data.semantics,
        "fusion": data.field.mode if data.field is not None else None,
        "dim": data.field.dim if data.field is not None else 0,
        "gaussians": int(sum(b.count for b in blocks if b is not None)),
        "floor_z": data.floor_z,
        "extra": data.extra,
        "block_size_m": store.block_size,
        "next_uid": store.next_uid,
        "fields": store.schema(),
        "block_files": list(names.values()),
    }
    arrays: dict[str, np.ndarray] = {"meta_json": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    arrays.update({_KEYFRAME_PREFIX + k: v for k, v in data.keyframes.to_arrays().items()})
    live = [b for b in blocks if b is not None]
    arrays[_BLOCK_PREFIX + "keys"] = np.array([b.key for b in live], np.int64)
    arrays[_BLOCK_PREFIX + "counts"] = np.array([b.count for b in live], np.int64)
    arrays[_BLOCK_PREFIX + "lo"] = np.array([b.lo for b in live], np.float32).reshape(-1, 3)
    arrays[_BLOCK_PREFIX + "hi"] = np.array([b.hi for b in live], np.float32).reshape(-1, 3)
    arrays[_BLOCK_PREFIX + "uids"] = np.array([(b.uid_lo, b.uid_hi) for b in live], np.int64).reshape(-1, 2)
    values, offsets = _ragged([np.array(sorted(b.anchors), np.int64) for b in live], np.int64)
    arrays[_BLOCK_PREFIX + "anchors"], arrays[_BLOCK_PREFIX + "anchor_offsets"] = values, offsets
    summaries = [store.summary(b) for b in live]
    for name in sorted({k for s in summaries for k in s}):
        parts = [s.get(name, np.zeros(0, np.int64)) for s in summaries]
        dtype = next((p.dtype for p in parts if p.size), np.dtype(np.int64))
        values, offsets = _ragged(parts, dtype)
        arrays[f"{_SUMMARY_PREFIX}{name}"], arrays[f"{_SUMMARY_PREFIX}{name}_offsets"] = values, offsets
    if data.field is not None:
        arrays.update({_FIELD_PREFIX + k: v for k, v in data.field.state().items()})
    arrays.update({_DECODER_PREFIX + k: v for k, v in data.decoder.items()})
    remove_stale_temporaries(directory, ".map-*.npz.tmp")  # left by a writer killed mid-save
    out = atomic_write(directory / MAP_FILE, lambda fh: np.savez(fh, **arrays), what="map",
                       prefix=".map-", suffix=".npz.tmp")
    # superseded block files go one save later: a reader of the previous manifest still finds its own
    if store.files is not None and store.files.map_dir.resolve() == directory.resolve():
        store.files.remove_unlisted(set(names.values()) | previous | _paged_files(store))
    else:
        files.remove_unlisted(set(names.values()) | previous)
    return out


def _paged_files(store: BlockStore) -> set[str]:
    return {b.file for b in store.blocks if b.file is not None}


def _listed_files(manifest: Path) -> set[str]:
    """Block files named by an existing manifest (empty if there is none or it is unreadable)."""
    try:
        with manifest.open("rb") as fh, zipfile.ZipFile(fh) as zf:
            meta = json.loads(_read_member(zf, "meta_json").tobytes().decode())
        return {n for n in meta.get("block_files", []) if BlockFiles.valid_name(n)}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, AttributeError):
        return set()


_MAX_GAUSSIANS = 2_000_000_000
_MAX_ROW_VALUES = 8192  # values per Gaussian in one array (average fusion: 3 x 512)
_MAX_OTHER_BYTES = 1 << 30  # all map-level arrays together (codebook, tracks, decoder, poses, block table)
_KNOWN_PREFIXES = ("meta_json", _KEYFRAME_PREFIX, _GAUSS_PREFIX, _FIELD_PREFIX, _DECODER_PREFIX, _BLOCK_PREFIX)


def _read_member(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(name + ".npy") as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _array_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise ValueError(f"array '{info.filename}' holds Python objects")
    return tuple(int(n) for n in shape), dtype


def _read_arrays(fh: IO[bytes], file: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, the arrays the format defines) from the open manifest ``fh``, after checking each
    array's declared size against the metadata (a map file never makes the reader allocate more
    than its format allows)."""
    try:
        with zipfile.ZipFile(fh) as zf:
            infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            if "meta_json" not in infos or infos["meta_json"].file_size > 64 << 20:
                raise MapFileError(f"map file {file} has no readable metadata")
            try:
                meta = json.loads(_read_member(zf, "meta_json").tobytes().decode())
                n = int(meta["gaussians"])
            except (KeyError, ValueError, TypeError, UnicodeDecodeError):
                raise MapFileError(f"map file {file} has no readable metadata") from None
            if not isinstance(meta, dict):
                raise MapFileError(f"map file {file} has no readable metadata")
            if not 0 <= n <= _MAX_GAUSSIANS:
                raise MapFileError(f"map file {file} claims {n} Gaussians (at most {_MAX_GAUSSIANS} are read)")
            wanted, other_bytes = [], 0
            for name, info in infos.items():
                if name == "meta_json" or not name.startswith(_KNOWN_PREFIXES):
                    continue  # not part of the format: never read
                shape, dtype = _array_header(zf, info)
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if info.file_size < nbytes:
                    raise MapFileError(f"map file {file} is truncated: '{name}' declares {nbytes} bytes, "
                                       f"holds {info.file_size}")
                if name.startswith(_GAUSS_PREFIX):
                    if not shape or shape[0] != n or int(np.prod(shape[1:], dtype=np.int64)) > _MAX_ROW_VALUES:
                        raise MapFileError(f"map file {file} is inconsistent: '{name}' has shape {list(shape)}, "
                                           f"the metadata says {n} Gaussians")
                else:
                    other_bytes += nbytes
                    if other_bytes > _MAX_OTHER_BYTES:
                        raise MapFileError(f"map file {file} is inconsistent: map-level arrays exceed "
                                           f"{_MAX_OTHER_BYTES >> 20} MiB ('{name}' has shape {list(shape)})")
                wanted.append(name)
            return meta, {name: _read_member(zf, name) for name in wanted}
    except MapFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise MapFileError(f"map file {file} is corrupt or truncated ({exc or type(exc).__name__})") from None


def _check_finite(gmap: GaussianMap) -> None:
    """Raise ValueError if positions, sizes or rotations are not finite (a map of garbage)."""
    check_gaussians(gmap)


def load_map(path: str | Path) -> MapData:
    """Load a map directory (or its ``map.npz``); raises MapFileError if missing or corrupt. Blocks
    stay on disk until used."""
    path = Path(path)
    file = path / MAP_FILE if path.is_dir() else path
    if not file.is_file():
        raise MapFileError(f"no map at {path} (expected {file}); build one with 'langgs replay'")
    try:
        with file.open("rb") as fh:  # one handle: a writer replacing the file cannot mix two versions
            meta, arrays = _read_arrays(fh, file)
    except OSError as exc:
        raise MapFileError(f"cannot read map file {file}: {exc.strerror or exc}") from None
    if meta.get("format") != FORMAT:
        raise MapFileError(f"{file} is not a langgs_ros map")
    version = meta.get("version")
    if version not in _READABLE_VERSIONS:
        raise MapFileError(f"{file} has map format version {version}, this build reads "
                           f"{', '.join(map(str, _READABLE_VERSIONS))}")
    extra = meta.get("extra", {})
    notes: list[str] = []
    if not isinstance(extra, dict):
        notes.append(f"the map's metadata 'extra' is a {type(extra).__name__}, not a mapping: ignored")
        extra = {}
    try:
        sem_field = None
        if meta.get("fusion"):
            sem_field = create_field(meta["fusion"], int(meta["dim"]), MappingConfig())
            sem_field.load_state({k[len(_FIELD_PREFIX):]: v for k, v in arrays.items() if k.startswith(_FIELD_PREFIX)})
        if version == FORMAT_VERSION:
            store = _blocks_of_manifest(meta, arrays, file.parent)
        else:
            store = _blocks_of_gaussians(meta, arrays, file.parent)
            notes.append(f"map format {version} holds every Gaussian in one file: loaded into blocks in memory; "
                         f"saving writes format {FORMAT_VERSION}")
        if sem_field is not None:
            store.check = sem_field.validate
            store.summarize = sem_field.summarize
            store.summary_fields = frozenset(sem_field.columns)
            if version != FORMAT_VERSION:
                for blk in store.blocks:
                    sem_field.validate(store.columns_of(blk))
            sem_field.attach(store)
        keyframes = KeyframeLog.from_arrays(arrays.get(_KEYFRAME_PREFIX + "poses", np.zeros((0, 4, 4))),
                                            arrays.get(_KEYFRAME_PREFIX + "stamps_ns"),
                                            arrays.get(_KEYFRAME_PREFIX + "first_uids"),
                                            arrays.get(_KEYFRAME_PREFIX + "mounts"),
                                            arrays.get(_KEYFRAME_PREFIX + "odom"))
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise MapFileError(f"map file {file} is inconsistent: {exc}") from None
    if not keyframes.times_known:
        notes.append(f"map format {version} keeps no observation times: answers carry no first/last seen, and a "
                     "maximum age cannot be applied (rebuild the map to get them)")
    return MapData(store=store, field=sem_field, fixed_frame=str(meta.get("fixed_frame", "map")),
                   semantics=str(meta.get("semantics", "none")), keyframes=keyframes, notes=notes,
                   extra=extra, floor_z=_optional_float(meta.get("floor_z")),
                   decoder={k[len(_DECODER_PREFIX):]: v for k, v in arrays.items() if k.startswith(_DECODER_PREFIX)})


def _blocks_of_gaussians(meta: dict[str, Any], arrays: dict[str, np.ndarray], directory: Path) -> BlockStore:
    """Format 1 and 2: every Gaussian in the manifest, put into blocks in memory."""
    gauss = {k[len(_GAUSS_PREFIX):]: v for k, v in arrays.items() if k.startswith(_GAUSS_PREFIX)}
    gmap = GaussianMap.from_arrays(gauss)
    _check_finite(gmap)
    if len(gmap) != meta["gaussians"]:
        raise ValueError(f"{len(gmap)} Gaussians stored, metadata says {meta['gaussians']}")
    return BlockStore.from_gaussians(gmap, DEFAULT_BLOCK_SIZE_M, directory=directory)


def _blocks_of_manifest(meta: dict[str, Any], arrays: dict[str, np.ndarray], directory: Path) -> BlockStore:
    """Format 3: the block table, every block left on disk."""
    store = BlockStore(float(meta["block_size_m"]), directory=directory)
    for name, (dtype, shape, fill) in dict(meta["fields"]).items():
        store.add_field(str(name), np.dtype(dtype), tuple(int(s) for s in shape), float(fill))
    keys = np.asarray(arrays[_BLOCK_PREFIX + "keys"], np.int64)
    names = list(meta["block_files"])
    counts = np.asarray(arrays[_BLOCK_PREFIX + "counts"], np.int64)
    lo, hi = arrays[_BLOCK_PREFIX + "lo"], arrays[_BLOCK_PREFIX + "hi"]
    uids = np.asarray(arrays[_BLOCK_PREFIX + "uids"], np.int64)
    anchors, anchor_offsets = arrays[_BLOCK_PREFIX + "anchors"], arrays[_BLOCK_PREFIX + "anchor_offsets"]
    n = keys.size
    if not (len(names) == counts.size == n and lo.shape == hi.shape == (n, 3) and uids.shape == (n, 2)
            and anchor_offsets.shape == (n + 1,)):
        raise ValueError(f"the block table of {n} blocks has arrays of other lengths")
    if int(counts.sum()) != int(meta["gaussians"]) or (counts < 0).any():
        raise ValueError(f"the blocks hold {int(counts.sum())} Gaussians, the metadata says {meta['gaussians']}")
    bad = next((name for name in names if not BlockFiles.valid_name(name)), None)
    if bad is not None:
        raise ValueError(f"block file name {bad!r} is not one this format writes")
    files = BlockFiles(directory)
    for name, count in zip(names, counts.tolist()):  # each block file is there and of its size (headers only)
        try:
            rows = files.rows(name)
        except FileNotFoundError:
            raise MapFileError(f"map block {files.directory / name} is missing (the map directory is incomplete, "
                               "or another process replaced the map meanwhile: load it again)") from None
        if rows != count:
            raise ValueError(f"map block {name} holds {rows} Gaussians, the map says {count}")
    summary_names = [k[len(_SUMMARY_PREFIX):] for k in arrays
                     if k.startswith(_SUMMARY_PREFIX) and not k.endswith("_offsets")]
    summaries: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for name in summary_names:
        values, offsets = arrays[_SUMMARY_PREFIX + name], arrays[f"{_SUMMARY_PREFIX}{name}_offsets"]
        if offsets.shape != (n + 1,) or offsets[-1] != values.size:
            raise ValueError(f"block summary '{name}' does not fit the {n} blocks")
        for i in range(n):
            summaries[i][name] = values[offsets[i]:offsets[i + 1]]
    if anchor_offsets[-1] != anchors.size:
        raise ValueError("the blocks' anchoring keyframes do not fit their offsets")
    for i in range(n):
        store.add_block_on_disk(int(keys[i]), names[i], int(counts[i]), lo[i], hi[i], (int(uids[i, 0]), int(uids[i, 1])),
                                set(anchors[anchor_offsets[i]:anchor_offsets[i + 1]].tolist()),
                                summaries[i] if summary_names else None)
    store.reserve_uids(int(meta.get("next_uid", 0)))
    return store
