"""Saving and loading a semantic Gaussian map: one ``map.npz`` in a map directory.

The file is written to a temporary name in the same directory, flushed to disk and atomically
renamed, so a crash mid-save never replaces a good map with a broken one. Loading reads every
array (zip CRCs are checked) and validates the metadata, so a truncated or corrupt file gives a
:class:`~langgs_ros.errors.MapFileError`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from langgs_ros.config import MappingConfig
from langgs_ros.errors import MapFileError
from langgs_ros.mapping.fusion import SemanticField, create_field
from langgs_ros.mapping.gaussians import GaussianMap

__all__ = ["MapData", "save_map", "load_map", "MAP_FILE", "FORMAT_VERSION"]

MAP_FILE = "map.npz"
FORMAT = "langgs_ros.map"
FORMAT_VERSION = 1
_GAUSS_PREFIX = "g_"
_FIELD_PREFIX = "s_"
_DECODER_PREFIX = "d_"


@dataclass
class MapData:
    """A map as saved: Gaussians, their semantic field (None: geometry only) and metadata."""

    gmap: GaussianMap
    field: SemanticField | None
    fixed_frame: str = "map"
    semantics: str = "none"
    """Name of the semantic backend that built the map (selects the query text encoder)."""
    keyframe_poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (config, replay summary)."""
    decoder: dict[str, np.ndarray] = field(default_factory=dict)
    """Weights of semantic refinement's decoder (``Refiner.decoder_state``); empty if none."""


def save_map(path: str | Path, data: MapData) -> Path:
    """Write ``data`` to ``path/map.npz`` atomically; returns the file path."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fixed_frame": data.fixed_frame,
        "semantics": data.semantics,
        "fusion": data.field.mode if data.field is not None else None,
        "dim": data.field.dim if data.field is not None else 0,
        "gaussians": len(data.gmap),
        "extra": data.extra,
    }
    arrays: dict[str, np.ndarray] = {
        "meta_json": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "keyframe_poses": np.asarray(data.keyframe_poses, dtype=np.float64),
    }
    arrays.update({_GAUSS_PREFIX + k: v for k, v in data.gmap.to_arrays().items()})
    if data.field is not None:
        arrays.update({_FIELD_PREFIX + k: v for k, v in data.field.state().items()})
    arrays.update({_DECODER_PREFIX + k: v for k, v in data.decoder.items()})
    target = directory / MAP_FILE
    fd, tmp = tempfile.mkstemp(prefix=".map-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def _read_arrays(file: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise MapFileError(f"map file {file} is corrupt or truncated ({exc or type(exc).__name__})") from None


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
    if meta.get("version") != FORMAT_VERSION:
        raise MapFileError(f"{file} has map format version {meta.get('version')}, this build reads {FORMAT_VERSION}")
    gauss = {k[len(_GAUSS_PREFIX):]: v for k, v in arrays.items() if k.startswith(_GAUSS_PREFIX)}
    try:
        gmap = GaussianMap.from_arrays(gauss)
        if len(gmap) != meta["gaussians"]:
            raise ValueError(f"{len(gmap)} Gaussians stored, metadata says {meta['gaussians']}")
        sem_field = None
        if meta.get("fusion"):
            sem_field = create_field(meta["fusion"], int(meta["dim"]), MappingConfig())
            sem_field.load_state({k[len(_FIELD_PREFIX):]: v for k, v in arrays.items() if k.startswith(_FIELD_PREFIX)})
            sem_field.validate(gmap)
            sem_field.attach(gmap)
    except (ValueError, KeyError, TypeError) as exc:
        raise MapFileError(f"map file {file} is inconsistent: {exc}") from None
    return MapData(gmap=gmap, field=sem_field, fixed_frame=str(meta.get("fixed_frame", "map")),
                   semantics=str(meta.get("semantics", "none")),
                   keyframe_poses=arrays.get("keyframe_poses", np.zeros((0, 4, 4))),
                   extra=meta.get("extra", {}),
                   decoder={k[len(_DECODER_PREFIX):]: v for k, v in arrays.items() if k.startswith(_DECODER_PREFIX)})
