"""Benchmark: per-keyframe time of the 'clip' semantic backend, per stage, on the synthetic scene.

Stages: masks (prompted SAM/SAM 2 multimask + merging), embeddings (OpenCLIP region and context
features), association (SAM 2 propagation, when selected); prompts decoded per keyframe (fewer
where the map labels the surface already: ``models.known_prompt_factor``). Weights are random (speed does not
depend on them): ``--arch tiny`` uses the tiny_test architectures, ``--arch real`` SAM vit_b /
SAM 2.1 hiera tiny and OpenCLIP ViT-B-16. Each is saved as a checkpoint and loaded through the
same loader users hit. Runs on CUDA when present (models.device auto), else CPU.

    python benchmarks/bench_semantics.py [--arch tiny|real] [--mask-model sam|sam2]
        [--association geometric|sam2] [--frames 12] [--work out/bench_semantics]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from langgs_ros.config import ModelsConfig, PipelineConfig
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.pipeline import peak_memory_mb
from langgs_ros.semantics import models
from langgs_ros.semantics.backend import create_backend
from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag

ARCHS = {"tiny": ("tiny_test", "tiny_test", "tiny_test"), "real": ("vit_b", "sam2.1_hiera_tiny", "ViT-B-16")}


def random_checkpoints(arch: str, out: Path) -> ModelsConfig:
    """Save random-weight checkpoints of ``arch`` under ``out``; a config that selects them."""
    import torch

    sam_type, sam2_type, clip_name = ARCHS[arch]
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{arch}_{k}.pt" for k in ("sam", "sam2", "clip")}
    torch.manual_seed(0)
    if not paths["sam"].exists():
        torch.save(models.build_sam(sam_type).state_dict(), paths["sam"])
    if not paths["sam2"].exists():
        torch.save({"model": models.build_sam2(sam2_type, "cpu").state_dict()}, paths["sam2"])
    if not paths["clip"].exists():
        torch.save(models.build_clip(clip_name)[0].state_dict(), paths["clip"])
    return ModelsConfig(sam_model_type=sam_type, sam_checkpoint=str(paths["sam"]), sam2_model_type=sam2_type,
                        sam2_checkpoint=str(paths["sam2"]), clip_model=clip_name, clip_pretrained=str(paths["clip"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    parser.add_argument("--mask-model", choices=["sam", "sam2"], default="sam2")
    parser.add_argument("--association", choices=["geometric", "sam2"], default="geometric")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--frames", type=int, default=12, help="frames of the synthetic bag (640x480)")
    parser.add_argument("--work", type=Path, default=Path("out/bench_semantics"))
    args = parser.parse_args()

    bag = args.work / f"synth_{args.frames}" / "synth_bag"
    if not bag.exists():
        make_synthetic_bag(bag.parent, SynthSpec(frames=args.frames))
    config = PipelineConfig()
    config.models = dataclasses.replace(random_checkpoints(args.arch, args.work / "weights"),
                                        mask_model=args.mask_model, association=args.association,
                                        points_per_side=args.points_per_side,
                                        pred_iou_thresh=0.0, stability_score_thresh=0.0)  # random weights
    config.mapping.keyframe_translation_m = 0.0  # every frame is a keyframe
    start = time.perf_counter()
    backend = create_backend("clip", models=config.models)
    load_s = time.perf_counter() - start
    mapper = Mapper(config.mapping, backend)
    kf_ms, segments = [], []
    with BagFrameReader(bag, config.input) as source:
        for frame in source.frames():
            stats = mapper.integrate(frame)
            kf_ms.append(1000 * stats.seconds)
            print(f"keyframe {len(kf_ms)}: {kf_ms[-1]:.0f} ms, {stats.total} Gaussians", flush=True)
    n = max(1, backend.keyframes)
    rss, gpu = peak_memory_mb()
    row = {
        "arch": args.arch, "mask_model": args.mask_model, "association": args.association,
        "device": str(backend.device), "points_per_side": args.points_per_side, "image": "640x480",
        "keyframes": backend.keyframes, "model_load_s": round(load_s, 2),
        "prompts_per_keyframe": round(getattr(backend, "prompts", 0) / n, 1),
        "stage_ms_per_keyframe": {k: round(1000 * v / n, 1) for k, v in backend.stage_seconds.items()},
        "ingest_ms_p50": round(float(np.median(kf_ms)), 1), "ingest_ms_max": round(float(np.max(kf_ms)), 1),
        "peak_rss_mb": round(rss), "peak_gpu_mb": round(gpu),
    }
    print(json.dumps(row, indent=1))
    out = args.work / f"semantics_{args.arch}_{args.mask_model}_{args.association}.json"
    out.write_text(json.dumps(row, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
