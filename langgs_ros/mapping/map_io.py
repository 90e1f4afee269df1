"""Saving and loading a semantic Gaussian map: one ``map.npz`` in a map directory.

The file is written to a temporary name in the same directory, flushed to disk and atomically
renamed, so a crash mid-save never replaces a good map with a broken one. Loading reads every
array (zip CRCs are checked) and validates the metadata, so a truncated or corrupt file gives a
:class:`~langgs_ros.errors.MapFileError`.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from langgs_ros.config import MappingConfig
from langgs_ros.errors import MapFileError
from langgs_ros.io.output_paths import atomic_write, check_output_dir, remove_stale_temporaries
from langgs_ros.mapping.fusion import SemanticField, create_field
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.keyframe_log import KeyframeLog

__all__ = ["MapData", "save_map", "load_map", "MAP_FILE", "FORMAT_VERSION"]

MAP_FILE = "map.npz"
FORMAT = "langgs_ros.map"
FORMAT_VERSION = 2
"""2: keyframe stamps, first Gaussian ids (times in answers, anchors), camera mounts (pose
corrections) and, optional, map -> odom per keyframe (re-anchoring; a map without it re-anchors
nothing). Version 1 maps load with times unknown."""
_READABLE_VERSIONS = (1, 2)
_GAUSS_PREFIX = "g_"
_FIELD_PREFIX = "s_"
_DECODER_PREFIX = "d_"
_KEYFRAME_PREFIX = "keyframe_"


@dataclass
class MapData:
    """A map as saved: Gaussians, their semantic field (None: geometry only) and metadata."""

    gmap: GaussianMap
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


def _optional_float(value: Any) -> float | None:
    """A finite float from metadata, or None (absent in maps written before the field existed)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def save_map(path: str | Path, data: MapData) -> Path:
    """Write ``data`` to ``path/map.npz`` atomically; returns the file path."""
    directory = check_output_dir(path, "map directory")
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fixed_frame": data.fixed_frame,
        "semantics": data.semantics,
        "fusion": data.field.mode if data.field is not None else None,
        "dim": data.field.dim if data.field is not None else 0,
        "gaussians": len(data.gmap),
        "floor_z": data.floor_z,
        "extra": data.extra,
    }
    arrays: dict[str, np.ndarray] = {
        "meta_json": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    }
    arrays.update({_KEYFRAME_PREFIX + k: v for k, v in data.keyframes.to_arrays().items()})
    arrays.update({_GAUSS_PREFIX + k: v for k, v in data.gmap.to_arrays().items()})
    if data.field is not None:
        arrays.update({_FIELD_PREFIX + k: v for k, v in data.field.state().items()})
    arrays.update({_DECODER_PREFIX + k: v for k, v in data.decoder.items()})
    remove_stale_temporaries(directory, ".map-*.npz.tmp")  # left by a writer killed mid-save
    return atomic_write(directory / MAP_FILE, lambda fh: np.savez(fh, **arrays), what="map",
                        prefix=".map-", suffix=".npz.tmp")


_MAX_GAUSSIANS = 200_000_000
_MAX_ROW_VALUES = 8192  # values per Gaussian in one array (average fusion: 3 x 512)
_MAX_OTHER_BYTES = 1 << 30  # all map-level arrays together (codebook, tracks, decoder, poses)
_KNOWN_PREFIXES = ("meta_json", _KEYFRAME_PREFIX, _GAUSS_PREFIX, _FIELD_PREFIX, _DECODER_PREFIX)


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


def _read_arrays(file: Path) -> dict[str, np.ndarray]:
    """The arrays the format defines, after checking each one's declared size against the
    metadata (a map file never makes the reader allocate more than its format allows)."""
    try:
        with zipfile.ZipFile(file) as zf:
            infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            if "meta_json" not in infos or infos["meta_json"].file_size > 64 << 20:
                raise MapFileError(f"map file {file} has no readable metadata")
            with np.load(file, allow_pickle=False) as npz:
                meta_raw = npz["meta_json"]
            try:
                n = int(json.loads(meta_raw.tobytes().decode())["gaussians"])
            except (KeyError, ValueError, TypeError, UnicodeDecodeError):
                raise MapFileError(f"map file {file} has no readable metadata") from None
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
            with np.load(file, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in wanted}
            arrays["meta_json"] = meta_raw
            return arrays
    except MapFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise MapFileError(f"map file {file} is corrupt or truncated ({exc or type(exc).__name__})") from None


def _check_finite(gmap: GaussianMap) -> None:
    """Raise ValueError if positions, sizes or rotations are not finite (a map of garbage)."""
    if not len(gmap):
        return
    for name in ("means", "scales", "quats"):
        bad = int(np.count_nonzero(~np.isfinite(gmap[name]).all(axis=1)))
        if bad:
            raise ValueError(f"{bad} Gaussians have non-finite {name}")
    if np.any(gmap["scales"] < 0):
        raise ValueError("negative Gaussian scales")


def load_map(path: str | Path) -> MapData:
    """Load a map directory (or its ``map.npz``); raises MapFileError if missing or corrupt."""
    path = Path(path)
    file = path / MAP_FILE if path.is_dir() else path
    if not file.is_file():
        raise MapFileError(f"no map at {path} (expected {file}); build one with 'langgs replay'")
    arrays = _read_arrays(file)
    try:
        meta = json.loads(arrays.pop("meta_json").tobytes().decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        raise MapFileError(f"map file {file} has no readable metadata") from None
    if meta.get("format") != FORMAT:
        raise MapFileError(f"{file} is not a langgs_ros map")
    version = meta.get("version")
    if version not in _READABLE_VERSIONS:
        raise MapFileError(f"{file} has map format version {version}, this build reads "
                           f"{', '.join(map(str, _READABLE_VERSIONS))}")
    gauss = {k[len(_GAUSS_PREFIX):]: v for k, v in arrays.items() if k.startswith(_GAUSS_PREFIX)}
    try:
        gmap = GaussianMap.from_arrays(gauss)
        _check_finite(gmap)
        if len(gmap) != meta["gaussians"]:
            raise ValueError(f"{len(gmap)} Gaussians stored, metadata says {meta['gaussians']}")
        sem_field = None
        if meta.get("fusion"):
            sem_field = create_field(meta["fusion"], int(meta["dim"]), MappingConfig())
            sem_field.load_state({k[len(_FIELD_PREFIX):]: v for k, v in arrays.items() if k.startswith(_FIELD_PREFIX)})
            sem_field.validate(gmap)
            sem_field.attach(gmap)
        keyframes = KeyframeLog.from_arrays(arrays.get(_KEYFRAME_PREFIX + "poses", np.zeros((0, 4, 4))),
                                            arrays.get(_KEYFRAME_PREFIX + "stamps_ns"),
                                            arrays.get(_KEYFRAME_PREFIX + "first_uids"),
                                            arrays.get(_KEYFRAME_PREFIX + "mounts"),
                                            arrays.get(_KEYFRAME_PREFIX + "odom"))
    except (ValueError, KeyError, TypeError) as exc:
        raise MapFileError(f"map file {file} is inconsistent: {exc}") from None
    notes = [] if keyframes.times_known else [
        f"map format {version} keeps no observation times: answers carry no first/last seen, and a "
        "maximum age cannot be applied (rebuild the map to get them)"]
    return MapData(gmap=gmap, field=sem_field, fixed_frame=str(meta.get("fixed_frame", "map")),
                   semantics=str(meta.get("semantics", "none")), keyframes=keyframes, notes=notes,
                   extra=meta.get("extra", {}), floor_z=_optional_float(meta.get("floor_z")),
                   decoder={k[len(_DECODER_PREFIX):]: v for k, v in arrays.items() if k.startswith(_DECODER_PREFIX)})
