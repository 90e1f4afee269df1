"""Weights loading: local files only, clear errors naming the file (issue 4, item 4)."""

from __future__ import annotations

import dataclasses

import pytest

from langgs_ros.cli import main
from langgs_ros.errors import BackendUnavailableError, ConfigError
from langgs_ros.semantics import models


def test_tiny_checkpoints_load_through_the_user_loaders(tiny_models):
    sam = models.load_sam(tiny_models, models.resolve_device("cpu"))
    sam2 = models.load_sam2(tiny_models, models.resolve_device("cpu"))
    clip, tokenizer = models.load_clip(tiny_models, models.resolve_device("cpu"))
    assert type(sam).__name__ == "Sam" and not sam.training
    assert type(sam2).__name__ == "SAM2VideoPredictor" and not sam2.training
    assert tokenizer(["a mug"]).shape[0] == 1 and not clip.training


def test_loaded_weights_are_the_saved_ones(tiny_models, tiny_checkpoints):
    import torch

    saved = torch.load(tiny_checkpoints["sam"], weights_only=True)
    loaded = models.load_sam(tiny_models, torch.device("cpu")).state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_missing_checkpoint_names_the_file_and_where_to_get_it(tiny_models, tmp_path):
    missing = tmp_path / "nowhere" / "sam_vit_b_01ec64.pth"
    config = dataclasses.replace(tiny_models, sam_model_type="vit_b", sam_checkpoint=str(missing))
    with pytest.raises(BackendUnavailableError, match="sam_vit_b_01ec64.pth not found; download it from https://"):
        models.load_sam(config, models.resolve_device("cpu"))


def test_truncated_checkpoint_is_a_clear_error(tiny_models, tiny_checkpoints, tmp_path):
    broken = tmp_path / "sam2_truncated.pt"
    data = tiny_checkpoints["sam2"].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(BackendUnavailableError, match="sam2_truncated.pt cannot be read"):
        models.load_sam2(dataclasses.replace(tiny_models, sam2_checkpoint=str(broken)), models.resolve_device("cpu"))


def test_checkpoint_of_another_architecture_is_refused(tiny_models, tiny_checkpoints):
    wrong = dataclasses.replace(tiny_models, sam_checkpoint=str(tiny_checkpoints["clip"]))
    with pytest.raises(BackendUnavailableError, match="does not match the configured architecture"):
        models.load_sam(wrong, models.resolve_device("cpu"))
    wrong_clip = dataclasses.replace(tiny_models, clip_pretrained=str(tiny_checkpoints["sam"]))
    with pytest.raises(BackendUnavailableError, match="cannot be loaded into tiny_test"):
        models.load_clip(wrong_clip, models.resolve_device("cpu"))


def test_clip_tag_not_in_cache_is_not_downloaded(tiny_models, tmp_path):
    config = dataclasses.replace(tiny_models, clip_model="ViT-B-16", clip_pretrained="laion2b_s34b_b88k",
                                 clip_cache_dir=str(tmp_path))
    with pytest.raises(BackendUnavailableError, match="not in the cache .* downloads are off"):
        models.load_clip(config, models.resolve_device("cpu"))


def test_unknown_names_are_config_errors(tiny_models):
    with pytest.raises(ConfigError, match="unknown SAM model type"):
        models.build_sam("vit_q")
    with pytest.raises(ConfigError, match="unknown SAM 2 model type"):
        models.build_sam2("hiera_huge", "cpu")
    with pytest.raises(ConfigError, match="no weights 'nope'"):
        models.load_clip(dataclasses.replace(tiny_models, clip_model="ViT-B-16", clip_pretrained="nope"), "cpu")
    with pytest.raises(ConfigError, match="is not a torch device"):
        models.resolve_device("gpu0")


def test_langgs_models_lists_files_and_checks_them(tiny_models, tmp_path, capsys):
    import yaml

    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"models": dataclasses.asdict(tiny_models)}))
    assert main(["models", "--config", str(config), "--check"]) == 0
    out = capsys.readouterr().out
    assert "masks (SAM)" in out and "embeddings (OpenCLIP)" in out and "MISSING" not in out
    assert "all models load" in out

    missing = dataclasses.replace(tiny_models, sam_checkpoint=str(tmp_path / "gone.pth"))
    config.write_text(yaml.safe_dump({"models": dataclasses.asdict(missing)}))
    assert main(["models", "--config", str(config)]) == 2  # a file missing: the README's exit status
    out = capsys.readouterr().out
    assert "MISSING" in out and "gone.pth" in out
    assert main(["models", "--config", str(config), "--check"]) == 2
    assert "gone.pth not found" in capsys.readouterr().err
