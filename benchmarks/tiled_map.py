"""A map made large by repetition, for the benchmarks that time queries against map size."""

from __future__ import annotations

import numpy as np

from langgs_ros.mapping.block_store import BlockStore
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.map_io import MapData
from langgs_ros.mapping.fusion import SemanticField


def tiled(store: BlockStore, field: SemanticField | None, target: int, semantics: str = "oracle",
          fixed_frame: str = "map") -> MapData:
    """The Gaussians of ``store`` repeated side by side (copies 7 m apart along +x) until they are
    at least ``target``; each copy's Gaussians get ids of their own."""
    base = store.snapshot().to_arrays()
    n = len(base["means"])
    copies = max(1, int(np.ceil(target / n)))
    arrays = {name: np.concatenate([arr] * copies) for name, arr in base.items() if name != "uid"}
    arrays["means"][:, 0] += np.repeat(np.arange(copies, dtype=np.float32) * 7.0, n)
    return MapData.of_gaussians(GaussianMap.from_arrays(arrays), field, semantics=semantics, fixed_frame=fixed_frame)
