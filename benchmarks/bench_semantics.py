"""Benchmark: per-keyframe time of the 'clip' semantic backend, per stage, on the synthetic scene.

Stages: masks (prompted SAM/SAM 2 multimask + merging), embeddings (OpenCLIP region and context
features), association (SAM 2 propagation, when selected); prompts decoded per keyframe (from the
keyframe's geometry, ``--prompts geometry`` capped by ``--max-prompts``, or the GAGS grid). Against
the image encoders alone (SAM's ``set_image`` and one OpenCLIP forward of the whole image: the part
of a keyframe no prompt count changes) as ``clip_step_over_encoders``. Weights are random (speed does not
depend on them): ``--arch tiny`` uses the tiny_test architectures, ``--arch real`` SAM vit_b /
SAM 2.1 hiera tiny and OpenCLIP ViT-B-16. Each is saved as a checkpoint and loaded through the
same loader users hit. Runs on CUDA when present (``--device auto``), else CPU.

``--realtime``: then ``langgs replay --realtime --no-drain --semantics clip`` with the same models and
prompts through the node's runtime on the bundled 640x480 bag (``--realtime-frames``, 10 Hz):
keyframes mapped and segmented while the bag plays, semantic lag p50/p95 (whether semantics keep up
with the camera).

    python benchmarks/bench_semantics.py [--arch tiny|real] [--mask-model sam|sam2]
        [--association geometric|sam2] [--prompts geometry|grid] [--max-prompts 48] [--frames 12 (keyframes)]
        [--device auto|cpu|cuda] [--mask-batch 0] [--feature-kinds both|region|context] [--realtime]
        [--work out/bench_semantics]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from langgs_ros.config import ModelsConfig, PipelineConfig, SemanticsConfig
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


def distinct_truth_segments(frame: object) -> int:
    """Distinct segments of the ground truth's three levels in ``frame`` (a mask shared by two
    levels counts once): about what a trained SAM keeps per keyframe, each needing a region feature."""
    from langgs_ros.semantics.oracle import OracleBackend

    levels = OracleBackend().segment(frame).levels  # type: ignore[arg-type]
    seen = set()
    for ids in levels:
        for i in np.unique(ids[ids >= 0]):
            seen.add(np.packbits(ids == i).tobytes())
    return len(seen)


def realtime_row(bag: Path, out: Path, config: PipelineConfig, prompting: SemanticsConfig) -> dict:
    """``replay --realtime --semantics clip`` of ``bag`` with ``config``'s models: what kept up."""
    from langgs_ros.runtime.realtime_replay import replay_realtime

    config = dataclasses.replace(config, semantics=dataclasses.replace(config.semantics, prompts=prompting.prompts,
                                                                       max_prompts=prompting.max_prompts))
    config.mapping = dataclasses.replace(config.mapping, keyframe_translation_m=PipelineConfig().mapping.keyframe_translation_m)
    summary = replay_realtime(bag, out, "clip", config, drain=False,
                              progress=lambda line: print(f"[realtime] {line}", flush=True))
    s = summary.status
    p50, p95, worst = summary.lag_percentiles()
    return {"bag_seconds": round(summary.bag_seconds, 1), "seconds": round(summary.seconds, 1),
            "frames_in": s.frames_in, "frames_dropped": s.frames_dropped,
            "keyframes_mapped": s.keyframes, "keyframes_segmented": s.keyframes_segmented,
            "semantics_dropped": s.semantics_dropped, "lag_s_p50": round(p50, 2), "lag_s_p95": round(p95, 2),
            "lag_s_max": round(worst, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    parser.add_argument("--mask-model", choices=["sam", "sam2"], default="sam2")
    parser.add_argument("--association", choices=["geometric", "sam2"], default="geometric")
    parser.add_argument("--points-per-side", type=int, default=32, help="grid prompts per side (--prompts grid)")
    parser.add_argument("--prompts", choices=["geometry", "grid"], default="geometry")
    parser.add_argument("--max-prompts", type=int, default=SemanticsConfig.max_prompts)
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:N")
    parser.add_argument("--mask-batch", type=int, default=ModelsConfig.mask_batch,
                        help="models.mask_batch: prompts per decoder batch (0 = auto: 1 on CPU, 64 on CUDA)")
    parser.add_argument("--feature-kinds", choices=["both", "region", "context"], default=ModelsConfig.feature_kinds,
                        help="models.feature_kinds: region features cost one CLIP forward per mask")
    parser.add_argument("--realtime", action="store_true", help="also replay a bag in real time (see above)")
    parser.add_argument("--realtime-frames", type=int, default=72, help="frames of the real-time bag")
    parser.add_argument("--frames", type=int, default=12,
                        help="keyframes to time: the first frames of the bundled 640x480 bag (72 frames, 10 Hz)")
    parser.add_argument("--work", type=Path, default=Path("out/bench_semantics"))
    args = parser.parse_args()

    bag = args.work / "synth_72" / "synth_bag"  # a short bag would move the camera faster than a robot
    if not bag.exists():
        make_synthetic_bag(bag.parent, SynthSpec(frames=72))
    config = PipelineConfig()
    config.models = dataclasses.replace(random_checkpoints(args.arch, args.work / "weights"),
                                        mask_model=args.mask_model, association=args.association,
                                        device=args.device, feature_kinds=args.feature_kinds,
                                        mask_batch=args.mask_batch,
                                        points_per_side=args.points_per_side,
                                        pred_iou_thresh=0.0, stability_score_thresh=0.0)  # random weights
    config.mapping.keyframe_translation_m = 0.0  # every frame is a keyframe
    start = time.perf_counter()
    prompting = SemanticsConfig(prompts=args.prompts, max_prompts=args.max_prompts)
    backend = create_backend("clip", models=config.models, semantics=prompting)
    load_s = time.perf_counter() - start
    mapper = Mapper(config.mapping, backend)
    kf_ms = []
    last_rgb = None
    truth_masks = []
    with BagFrameReader(bag, config.input, with_instances=True) as source:
        for frame in itertools.islice(source.frames(), args.frames):
            truth_masks.append(distinct_truth_segments(frame))
            stats = mapper.integrate(frame)
            kf_ms.append(1000 * stats.seconds)
            last_rgb = frame.rgb
            print(f"keyframe {len(kf_ms)}: {kf_ms[-1]:.0f} ms, {stats.total} Gaussians", flush=True)
    n = max(1, backend.keyframes)
    sam_encoder_s = backend.masks.encoder_seconds / n
    clip_encoder_s = region_s = float("nan")
    if last_rgb is not None:  # one forward of the whole image (what 'context' features run once per keyframe)
        backend.features.dense(last_rgb)  # warm
        start = time.perf_counter()
        for _ in range(3):
            backend.features.dense(last_rgb)
        clip_encoder_s = (time.perf_counter() - start) / 3
        # one region feature (a CLIP forward of one crop): what each embedded mask adds
        crops = np.zeros((4, *last_rgb.shape[:2]), bool)
        for i in range(4):
            crops[i, 40 * i:40 * i + 120, 60 * i:60 * i + 160] = True
        start = time.perf_counter()
        backend.features.region(last_rgb, crops)
        region_s = (time.perf_counter() - start) / 4
    step_s = sum(backend.stage_seconds.values()) / n
    masks_embedded = getattr(backend, "masks_embedded", 0) / n
    per_mask_s = region_s if "region" in backend.features.kinds else 0.0
    # random weights keep few masks; a trained model keeps about as many as the scene has segments
    trained_s = step_s + per_mask_s * (float(np.mean(truth_masks)) - masks_embedded) if truth_masks else float("nan")
    encoders_s = sam_encoder_s + clip_encoder_s
    rss, gpu = peak_memory_mb()
    row = {
        "arch": args.arch, "mask_model": args.mask_model, "association": args.association,
        "device": str(backend.device), "prompts": args.prompts,
        "max_prompts" if args.prompts == "geometry" else "points_per_side":
            args.max_prompts if args.prompts == "geometry" else args.points_per_side, "image": "640x480",
        "keyframes": backend.keyframes, "model_load_s": round(load_s, 2),
        "prompts_per_keyframe": round(getattr(backend, "prompts", 0) / n, 1),
        "feature_kinds": args.feature_kinds, "mask_batch": args.mask_batch,
        "masks_embedded_per_keyframe": round(masks_embedded, 1),
        "clip_region_ms_per_mask": round(1000 * region_s, 1),
        "truth_segments_per_keyframe": round(float(np.mean(truth_masks)), 1) if truth_masks else None,
        "estimated_trained_clip_step_ms": round(1000 * trained_s, 1),
        "estimated_trained_over_encoders": round(trained_s / encoders_s, 2) if encoders_s > 0 else None,
        "stage_ms_per_keyframe": {k: round(1000 * v / n, 1) for k, v in backend.stage_seconds.items()},
        "clip_step_ms_per_keyframe": round(1000 * step_s, 1),
        "encoders_ms": {"sam_image_encoder": round(1000 * sam_encoder_s, 1), "clip_image": round(1000 * clip_encoder_s, 1)},
        "clip_step_over_encoders": round(step_s / encoders_s, 2) if encoders_s > 0 else None,
        "keyframes_per_minute": round(60.0 / step_s, 1) if step_s > 0 else None,
        "ingest_ms_p50": round(float(np.median(kf_ms)), 1), "ingest_ms_max": round(float(np.max(kf_ms)), 1),
        "peak_rss_mb": round(rss), "peak_gpu_mb": round(gpu),
    }
    if args.realtime:
        rt_bag = args.work / f"synth_{args.realtime_frames}" / "synth_bag"  # synth_72: the same bag
        if not rt_bag.exists():
            make_synthetic_bag(rt_bag.parent, SynthSpec(frames=args.realtime_frames))
        row["realtime"] = realtime_row(rt_bag, args.work / "realtime_map", config, prompting)
    print(json.dumps(row, indent=1))
    out = args.work / f"semantics_{args.arch}_{args.mask_model}_{args.association}_{args.prompts}.json"
    out.write_text(json.dumps(row, indent=1))
    print(f"written to {out}", flush=True)
    if args.realtime:  # the semantics worker may still be inside a model (no drain): do not wait for it
        os._exit(0)


if __name__ == "__main__":
    main()
