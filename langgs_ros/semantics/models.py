"""Loading SAM, SAM 2 and OpenCLIP from local weights, offline, with clear start-up errors.

Every model is built by its library with random weights and then loaded from a checkpoint file
through :func:`load_weights`, so a missing, truncated or mismatched file is reported by name with
where to get it. Nothing is downloaded unless ``models.allow_download`` is set (open_clip tags
only; SAM/SAM 2 files are always local). The ``tiny_test`` architectures are built from the same
library classes with tiny widths; tests and CPU benchmarks use them with random weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgs_ros.config import ModelsConfig
from langgs_ros.errors import BackendUnavailableError, ConfigError

__all__ = ["ModelFile", "TINY", "resolve_device", "autocast_dtype", "load_weights", "build_sam",
           "load_sam", "build_sam2", "load_sam2", "build_clip", "load_clip", "model_files"]

TINY = "tiny_test"
"""Architecture name of the tiny random-weight test models."""

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_FILES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}
SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
SAM2_MODELS = {  # architecture -> (sam2 hydra config, checkpoint file name)
    "sam2.1_hiera_tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "sam2.1_hiera_small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "sam2.1_hiera_base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "sam2.1_hiera_large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
    TINY: ("configs/sam2.1/sam2.1_hiera_t.yaml", ""),
}
# SAM 2.1 tiny with every width shrunk: the real config and classes, a 128 px input, 8 x 8 features
_SAM2_TINY_OVERRIDES = [
    "model.image_size=128",
    "model.image_encoder.trunk.embed_dim=8",
    "model.image_encoder.trunk.stages=[1,1,2,1]",
    "model.image_encoder.trunk.global_att_blocks=[3]",  # not a stage-start (q-pool) block
    "model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[2,2]",
    "++model.image_encoder.trunk.window_spec=[4,4,4,4]",
    "model.image_encoder.neck.d_model=32",
    "model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "model.memory_attention.d_model=32",
    "model.memory_attention.num_layers=1",
    "model.memory_attention.layer.d_model=32",
    "model.memory_attention.layer.dim_feedforward=64",
    "model.memory_attention.layer.self_attention.embedding_dim=32",
    "model.memory_attention.layer.self_attention.feat_sizes=[8,8]",
    "model.memory_attention.layer.cross_attention.embedding_dim=32",
    "model.memory_attention.layer.cross_attention.feat_sizes=[8,8]",
    "model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=32",
    "model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=32",
    "model.memory_encoder.fuser.layer.dim=32",
    "model.num_maskmem=3",
]
_CLIP_TINY_CONFIG = Path(__file__).with_name("model_configs")


@dataclass
class ModelFile:
    """One configured model and where its weights are (for ``langgs models``)."""

    role: str
    architecture: str
    path: str
    present: bool
    source: str
    """Where to get the file, or how the library finds it."""


def resolve_device(spec: str, setting: str = "models.device") -> Any:
    """torch.device for ``auto``/``cpu``/``cuda``/``cuda:N``; a clear error (naming ``setting``) if
    CUDA is absent."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{setting} '{spec}' is not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting} is '{spec}' but this torch sees no CUDA device; use auto or cpu")
    return device


def autocast_dtype(device: Any, precision: str) -> Any:
    """Autocast dtype of the image encoders (None = full fp32)."""
    import torch

    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _expand(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path)))


def load_weights(model: Any, path: str | Path, what: str, where: str, nested_key: str | None = None) -> None:
    """Load a checkpoint file into ``model`` (strict); errors name the file and where to get it."""
    import torch

    path = _expand(str(path))
    if not path.is_file():
        raise BackendUnavailableError(
            f"{what} checkpoint {path} not found; download it from {where} and put it there "
            f"(or set the path in the config; `langgs models` lists every file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip error means a bad file
        raise BackendUnavailableError(f"{what} checkpoint {path} cannot be read ({type(exc).__name__}: "
                                      f"{exc}); it is truncated or not a PyTorch checkpoint") from None
    if nested_key is not None and isinstance(state, dict) and nested_key in state:
        state = state[nested_key]
    if not isinstance(state, dict):
        raise BackendUnavailableError(f"{what} checkpoint {path} does not hold a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise BackendUnavailableError(f"{what} checkpoint {path} does not match the configured "
                                      f"architecture: {' '.join(first)}") from None


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(f"{package} is not installed ({exc}); pip install -e . installs it") from None


def build_sam(model_type: str) -> Any:
    """segment_anything ``Sam`` of ``model_type`` (vit_b/l/h or tiny_test) with random weights."""
    sa = _require("segment_anything", "segment-anything")
    if model_type in SAM_FILES:
        return sa.sam_model_registry[model_type](checkpoint=None)
    if model_type != TINY:
        raise ConfigError(f"unknown SAM model type '{model_type}' (vit_b, vit_l, vit_h, {TINY})")
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    dim, size, patch = 32, 64, 16
    return Sam(
        image_encoder=ImageEncoderViT(img_size=size, patch_size=patch, embed_dim=16, depth=1, num_heads=2,
                                      mlp_ratio=2, out_chans=dim, qkv_bias=True, use_rel_pos=True,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), window_size=0),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(size // patch, size // patch),
                                     input_image_size=(size, size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2), transformer_dim=dim,
            iou_head_depth=2, iou_head_hidden_dim=16),
    )


def load_sam(config: ModelsConfig, device: Any) -> Any:
    """SAM with the configured checkpoint, in eval mode on ``device``."""
    model = build_sam(config.sam_model_type)
    url = SAM_URL + SAM_FILES.get(config.sam_model_type, "")
    load_weights(model, config.sam_checkpoint, f"SAM {config.sam_model_type}", url)
    return model.to(device).eval()


def build_sam2(model_type: str, device: Any) -> Any:
    """sam2 ``SAM2VideoPredictor`` (also an image model) of ``model_type`` with random weights."""
    build = _require("sam2.build_sam", "sam2")
    if model_type not in SAM2_MODELS:
        raise ConfigError(f"unknown SAM 2 model type '{model_type}' ({', '.join(SAM2_MODELS)})")
    config_file = SAM2_MODELS[model_type][0]
    overrides = list(_SAM2_TINY_OVERRIDES) if model_type == TINY else []
    return build.build_sam2_video_predictor(config_file, ckpt_path=None, device=str(device),
                                            hydra_overrides_extra=overrides)


def load_sam2(config: ModelsConfig, device: Any) -> Any:
    """SAM 2 with the configured checkpoint, in eval mode on ``device``."""
    model = build_sam2(config.sam2_model_type, device)
    url = SAM2_URL + SAM2_MODELS[config.sam2_model_type][1]
    load_weights(model, config.sam2_checkpoint, f"SAM 2 {config.sam2_model_type}", url, nested_key="model")
    return model.to(device).eval()


def build_clip(model_name: str) -> tuple[Any, Any]:
    """(open_clip model with random weights, tokenizer); ``tiny_test`` is a 64 px ViT of width 32."""
    open_clip = _require("open_clip", "open_clip_torch")
    if model_name == TINY and TINY not in open_clip.list_models():
        open_clip.add_model_config(_CLIP_TINY_CONFIG)
    if model_name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model '{model_name}' (see open_clip.list_models())")
    model = open_clip.create_model(model_name, pretrained=None)
    return model, open_clip.get_tokenizer(model_name)


def _clip_weights_file(config: ModelsConfig) -> Path:
    """Local file of the configured open_clip weights: a path, or a tag resolved in the cache."""
    import open_clip

    candidate = _expand(config.clip_pretrained)
    if candidate.suffix in (".pt", ".pth", ".bin", ".safetensors") or os.sep in config.clip_pretrained:
        return candidate
    pretrained_cfg = open_clip.get_pretrained_cfg(config.clip_model, config.clip_pretrained)
    if not pretrained_cfg:
        tags = [t for m, t in open_clip.list_pretrained() if m == config.clip_model]
        raise ConfigError(f"open_clip has no weights '{config.clip_pretrained}' for {config.clip_model} "
                          f"(tags: {', '.join(tags) or 'none'}; or give a local checkpoint file)")
    cache_dir = str(_expand(config.clip_cache_dir)) if config.clip_cache_dir else None
    source = pretrained_cfg.get("hf_hub", "") or pretrained_cfg.get("url", "")
    path = _cached_clip_file(pretrained_cfg, cache_dir)
    if path is None and config.allow_download:
        try:
            path = open_clip.download_pretrained(pretrained_cfg, cache_dir=cache_dir) or None
        except Exception as exc:  # noqa: BLE001 - hub and network errors vary by version
            raise BackendUnavailableError(f"downloading open_clip weights {source} failed: {exc}") from None
    if path is None:
        raise BackendUnavailableError(
            f"open_clip weights {config.clip_model}/{config.clip_pretrained} are not in the cache "
            f"({cache_dir or 'the default Hugging Face / open_clip cache'}) and downloads are off: fetch "
            f"{source} on a connected machine, or set models.clip_pretrained to a local file "
            f"(`langgs models` lists every file)")
    return Path(path)


def _cached_clip_file(pretrained_cfg: dict[str, Any], cache_dir: str | None) -> str | None:
    """open_clip weights already in a local cache, looked up without any network access."""
    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = pretrained_cfg.get("url", "")
    if url:
        local = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if local.is_file():
            return str(local)
    return None


def load_clip(config: ModelsConfig, device: Any) -> tuple[Any, Any]:
    """(open_clip model with the configured weights in eval mode on ``device``, tokenizer)."""
    open_clip = _require("open_clip", "open_clip_torch")
    if config.clip_model == TINY and TINY not in open_clip.list_models():
        open_clip.add_model_config(_CLIP_TINY_CONFIG)
    if config.clip_model not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model '{config.clip_model}' (see open_clip.list_models())")
    path = _clip_weights_file(config)  # before building, so a missing file fails fast
    if not path.is_file():
        raise BackendUnavailableError(f"open_clip checkpoint {path} not found (models.clip_pretrained; "
                                      f"`langgs models` lists every file)")
    try:
        model = open_clip.create_model(config.clip_model, pretrained=str(path))
    except Exception as exc:  # noqa: BLE001 - unpickling, safetensors and key errors all mean a bad file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendUnavailableError(f"open_clip checkpoint {path} cannot be loaded into {config.clip_model}: "
                                      f"{first}") from None
    return model.to(device).eval(), open_clip.get_tokenizer(config.clip_model)


def model_files(config: ModelsConfig) -> list[ModelFile]:
    """Each model the config selects, with its weights file and whether it is present."""
    files = []
    if config.mask_model == "sam":
        path = _expand(config.sam_checkpoint)
        files.append(ModelFile("masks (SAM)", config.sam_model_type, str(path), path.is_file(),
                               SAM_URL + SAM_FILES.get(config.sam_model_type, "?")))
    if config.mask_model == "sam2" or config.association == "sam2":
        path = _expand(config.sam2_checkpoint)
        name = SAM2_MODELS.get(config.sam2_model_type, ("", "?"))[1]
        files.append(ModelFile("masks/association (SAM 2)", config.sam2_model_type, str(path), path.is_file(),
                               SAM2_URL + name))
    try:
        clip_path = _clip_weights_file(config)
        files.append(ModelFile("embeddings (OpenCLIP)", f"{config.clip_model}/{config.clip_pretrained}",
                               str(clip_path), clip_path.is_file(), "local file or open_clip cache"))
    except ConfigError as exc:
        files.append(ModelFile("embeddings (OpenCLIP)", f"{config.clip_model}/{config.clip_pretrained}",
                               "-", False, str(exc)))
    except BackendUnavailableError:
        files.append(ModelFile("embeddings (OpenCLIP)", f"{config.clip_model}/{config.clip_pretrained}",
                               f"(looked in {_clip_cache_description(config)})", False, _clip_source(config)))
    return files


def _clip_cache_description(config: ModelsConfig) -> str:
    """The caches the configured open_clip tag is looked up in."""
    if config.clip_cache_dir:
        return str(_expand(config.clip_cache_dir))
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    return f"{hub} and ~/.cache/clip"


def _clip_source(config: ModelsConfig) -> str:
    """Where the configured open_clip tag comes from, and what to do with it offline."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(config.clip_model, config.clip_pretrained) or {}
    where = cfg.get("hf_hub", "") or cfg.get("url", "") or "the open_clip hub"
    return (f"{where} (download it on a connected machine into that cache, e.g. huggingface-cli download, "
            "or set models.clip_pretrained to a local file)")
