"""Tiny random-weight SAM, SAM 2 and OpenCLIP checkpoints, saved once per session.

They are built from the real library classes (``tiny_test`` architectures) and saved in each
library's checkpoint format, so the backend loads them through the same code users hit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from langgs_ros.config import ModelsConfig


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from langgs_ros.semantics import models

    out = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    paths = {"sam": out / "sam_tiny.pth", "sam2": out / "sam2_tiny.pt", "clip": out / "clip_tiny.pt"}
    torch.save(models.build_sam(models.TINY).state_dict(), paths["sam"])
    torch.save({"model": models.build_sam2(models.TINY, "cpu").state_dict()}, paths["sam2"])
    torch.save(models.build_clip(models.TINY)[0].state_dict(), paths["clip"])
    return paths


@pytest.fixture()
def tiny_models(tiny_checkpoints: dict[str, Path]) -> ModelsConfig:
    """Models config selecting the tiny checkpoints; random weights need open mask filters."""
    return ModelsConfig(
        mask_model="sam", sam_model_type="tiny_test", sam_checkpoint=str(tiny_checkpoints["sam"]),
        sam2_model_type="tiny_test", sam2_checkpoint=str(tiny_checkpoints["sam2"]),
        clip_model="tiny_test", clip_pretrained=str(tiny_checkpoints["clip"]),
        points_per_side=8, prompt_patches=4, pred_iou_thresh=-1.0, stability_score_thresh=0.0,
        min_mask_region_frac=0.0, device="cpu", image_long_side=128)


@pytest.fixture()
def two_boxes() -> np.ndarray:
    """[96, 128, 3] uint8: a red and a green box on black."""
    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[20:60, 30:80] = (200, 30, 30)
    rgb[50:90, 70:120] = (30, 200, 30)
    return rgb
