"""Pipeline configuration: one dataclass per concern, loadable from a YAML or JSON file.

A config file mirrors the sections below, e.g.::

    input: {color_topic: /camera/color/image_raw, fixed_frame: map}
    mapping: {pixel_stride: 2, fusion: codebook}
    query: {robot_radius: 0.25}

Unknown keys are rejected so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from langgs_ros.errors import ConfigError

__all__ = [
    "InputConfig",
    "MappingConfig",
    "OracleNoiseConfig",
    "QueryConfig",
    "ModelsConfig",
    "RefineConfig",
    "SemanticsConfig",
    "PipelineConfig",
    "load_config",
    "override",
    "config_to_dict",
    "RANGES",
    "field_range",
    "validate_config",
]


@dataclass
class InputConfig:
    """Where frames come from in a bag and how they are paired."""

    color_topic: str = "/camera/color/image_raw"
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8); if absent, ``<topic>/compressed``
    (sensor_msgs/CompressedImage, jpeg/png) is used."""
    camera_info_topic: str = "/camera/color/camera_info"
    """sensor_msgs/CameraInfo of the color camera (plumb_bob / rational_polynomial / equidistant)."""
    depth_topic: str = "/camera/aligned_depth_to_color/image_raw"
    """sensor_msgs/Image registered to color: 16UC1 millimetres or 32FC1 metres; 0/NaN/inf invalid."""
    instances_topic: str = "/camera/instances"
    """Ground-truth instance ids (16UC1, 0 = background), used only by the oracle backend."""
    labels_topic: str = "/scene/labels"
    """std_msgs/String with JSON {"<id>": "<label>"}, used only by the oracle backend."""
    fixed_frame: str = "map"
    """Fixed frame of the map (REP-105)."""
    base_frame: str = "base_link"
    """Robot base frame, on the floor (REP-105): where the map has too little floor of its own
    (a color-only camera over a textureless floor), the floor is taken from its pose. Empty = off;
    a TF tree without it leaves it off."""
    pose_topic: str = ""
    """If set, camera poses come from this geometry_msgs/PoseStamped or nav_msgs/Odometry topic
    instead of /tf; the pose is of ``pose_child_frame`` and is chained to the image frame by TF."""
    pose_child_frame: str = ""
    """Frame whose pose ``pose_topic`` carries; empty = Odometry child_frame_id, or the image frame."""
    pose_graph_topic: str = ""
    """nav_msgs/Path of SLAM's corrected base_frame poses in the fixed frame (e.g. after a loop
    closure): each new one re-poses the keyframes it covers and their Gaussians. Empty = off."""
    odom_frame: str = "odom"
    """Odometry frame (REP-105): each keyframe keeps the fixed frame -> odom transform at its stamp,
    for ``reanchor_on_map_odom_jump_m``. Empty, or a TF tree without it, keeps none."""
    reanchor_on_map_odom_jump_m: float = 0.0
    """When fixed -> odom (a localizer's correction, e.g. AMCL) has moved since a keyframe was
    integrated so that its camera would shift more than this (m), the keyframe and its Gaussians are
    re-expressed with the current fixed -> odom (odometry is trusted since). 0 = off."""
    sync_tolerance_s: float = 0.02
    """Largest header-stamp difference for pairing color with depth/instances, seconds."""
    tf_tolerance_s: float = 0.05
    """How far outside the span of a dynamic transform a lookup may still use its end sample, s."""
    camera_info_tolerance_s: float = -1.0
    """Largest stamp difference between an image and its CameraInfo, seconds; < 0 accepts any."""
    max_depth_m: float = 6.0
    """Depth beyond this range (metres) is treated as invalid."""
    min_depth_m: float = 0.1
    """Depth below this range (metres) is treated as invalid."""
    max_speed_mps: float = 10.0
    """A camera pose that moved faster than this since the last accepted frame (m/s; over at least
    0.1 s) is a glitch (a TF sample far off, a localizer's jump): the frame is skipped and counted.
    A new place that 3 frames in a row agree on is accepted (relocalisation). Lenient on purpose
    (robots drive and people walk below 2 m/s): it catches glitches, not fast driving. 0 = no check."""
    max_turn_rate_dps: float = 720.0
    """...or turned faster than this (degrees per second). 0 = no check."""
    max_gap_s: float = 10.0
    """``langgs replay --realtime``: a jump of the image stamps longer than this (s) is reported and
    skipped over, the replay clock jumping with it, instead of sleeping through it."""
    max_image_pixels: int = 16_777_216
    """Images declaring more pixels than this (width x height, e.g. 4096 x 4096) are skipped
    before decoding, so a corrupt header cannot exhaust memory."""


@dataclass
class MappingConfig:
    """Feed-forward Gaussian mapping and semantic fusion."""

    pixel_stride: int = 2
    """One Gaussian per stride x stride pixel block of a keyframe."""
    keyframe_translation_m: float = 0.10
    """A frame becomes a keyframe once the camera moved this far from the last keyframe (m)..."""
    keyframe_rotation_deg: float = 10.0
    """...or turned this much (degrees)."""
    surface_tolerance: float = 0.02
    """A map Gaussian explains a pixel if its depth is within max(1 cm, tol * depth) of it."""
    max_disagreement: float = 0.03
    """A keyframe in which more than this fraction of the map Gaussians it meets lie in its observed
    free space disagrees with the map as a whole: its pose is off (odometry drift before SLAM
    corrects it, approximate poses), so it removes nothing it sees through and counts as no evidence
    that an object has gone. A moved object is a few percent of a view at most. 1 = always trusted."""
    block_size_m: float = 2.0
    """Edge of the map's spatial blocks (m): a keyframe works on the blocks in its view frustum only,
    and blocks are what waits on disk beyond ``ram_budget_mb``. Saved with the map (a loaded map keeps
    its own)."""
    ram_budget_mb: float = 1024.0
    """RAM for the map's Gaussians (MiB, about 63 bytes each with semantics: 1024 holds ~17M); the
    blocks used longest ago beyond it are written to the map directory (a temporary one without)
    and loaded back when a view or a query needs them. Nothing observed is deleted for want of
    space. 0 = no budget (all in RAM)."""
    initial_opacity: float = 0.9
    """Opacity of a new Gaussian, 0..1."""
    fusion: Literal["codebook", "average"] = "codebook"
    """Semantic fusion: the CCL-LGS contrastive codebook, or a per-Gaussian running average."""
    codebook_size: int = 256
    """Prototypes in the codebook (capacity N of CCL-LGS)."""
    codebook_spawn_cos: float = 0.75
    """A feature whose best prototype cosine is below this spawns a new prototype."""
    codebook_steps: int = 4
    """Adam steps on the codebook per keyframe."""
    codebook_batch: int = 128
    """Replayed features per codebook step."""
    codebook_lr: float = 0.01
    """Adam learning rate of the prototypes."""
    codebook_pull: float = 0.25
    """lambda_pull of CCL-LGS eq. 8."""
    codebook_push: float = 0.25
    """lambda_push of CCL-LGS eq. 8."""
    codebook_margin: float = 0.7
    """Push-loss margin m of CCL-LGS eq. 7."""
    replay_size: int = 2048
    """Segment features (with their association labels) kept for codebook training."""
    association_iou: float = 0.5
    """A segment joins the map track it overlaps with IoU above this (CCL-LGS mask association)."""
    relabel_window: int = 8
    """A keyframe that disagrees with the map by more than ``relabel_max_disagreement`` votes on the
    labels of the Gaussians created within this many keyframes of it only (0 = all). Older Gaussians
    keep their votes, but still join segment association and count as evidence that an object has
    gone: their pose relative to such a view carries the odometry drift accumulated in between, which
    a SLAM correction later undoes for positions but could not undo in votes (on the drifting
    synthetic bag at 640x480 the corrected map's mean IoU went 0.88 -> 0.95, the drift-free one's
    unchanged)."""
    relabel_max_disagreement: float = 0.005
    """...fraction of the confirmed Gaussians a keyframe meets that it sees through, above which
    ``relabel_window`` applies (a view that agrees this well relabels any Gaussian, e.g. the table
    top where a moved object stood)."""
    stale_track_views: int = 8
    """Codebook fusion: a track (object) whose visible Gaussians lay in segments of another code in
    this many views in a row is gone (moved or removed): its Gaussians answer no query."""
    no_segment_vote_weight: float = 0.5
    """Codebook fusion: weight of a view in which a Gaussian lies in no segment, against 1 for a view
    in which it lies in one (SAM misses a segment more often than it puts a pixel in a wrong one).
    Rounded to quarters."""
    boundary_abstain_frac: float = 0.005
    """Pixels closer to a segment boundary than this fraction of the image width (3 px at 640) do
    not vote for a Gaussian's semantics: masks bleed and erode at their edges (both fusion modes).
    They only fill a Gaussian nobody voted for yet, with no weight."""
    occlusion_abstain_frac: float = 0.01
    """Pixels within this fraction of the image width (6 px at 640) of a nearer surface, and more
    than ``occlusion_depth_jump`` behind it, neither vote nor fill (masks bleed off an object onto
    the background behind its silhouette; both fusion modes). 0 = off."""
    occlusion_depth_jump: float = 0.1
    """...relative depth jump (fraction of the pixel's depth) that makes a silhouette."""
    stereo_views: int = 4
    """Color-only input: recent posed views the plane sweep compares a keyframe with."""
    stereo_planes: int = 256
    """Color-only input: depth planes of the sweep, uniform in inverse depth."""
    stereo_min_depth_m: float = 0.3
    """Color-only input: nearest plane of the sweep (m)."""
    stereo_max_depth_m: float = 6.0
    """Color-only input: farthest plane of the sweep (m)."""
    stereo_scale: float = 0.5
    """Color-only input: the sweep runs on images resized by this factor."""
    stereo_min_confidence: float = 0.45
    """Color-only input: pixels with less plane probability than this near the peak (within 1/32
    of the sweep's inverse-depth range) get no depth."""
    stereo_min_baseline_m: float = 0.05
    """Color-only input: a source view must be this far from the keyframe (m)."""
    stereo_refine_steps: int = 0
    """Color-only input: hypotheses per pixel of a second, finer sweep within one plane of the
    first's depth (< 3 = none; 9 sharpened the synthetic room's depth but thinned the real shelf's)."""
    stereo_consistent_views: int = 1
    """Color-only input: a sweep depth is kept only where this many earlier keyframes' depth maps
    agree with it (0 = keep all; removes confident wrong matches)."""
    stereo_consistency_tol: float = 0.03
    """Color-only input: ...agreeing within this fraction of the depth."""
    stereo_tolerance_per_m: float = 0.05
    """Color-only input: a Gaussian explains a sweep depth d within max(surface_tolerance, this x d)
    x d (1/m; 15 % at 3 m): sweep depth errors grow with d squared, so a far surface seen again is
    confirmed and averaged instead of duplicated."""
    stereo_average_positions: bool = True
    """Color-only input: a Gaussian seen again moves to the mean of its observations (stereo depth
    is noisy; N views shrink the noise by sqrt(N))."""
    stereo_plane_fill: Literal["floor", "planes", "off"] = "floor"
    """Color-only input: fill textureless holes of the sweep depth whose border depths agree with the
    floor under the robot's base frame (floor), or also with a plane fitted to the border (planes:
    denser, but on the real shelf frames it put fills 0.4 m off at p90); filled Gaussians start
    unconfirmed and unlabelled."""


@dataclass
class OracleNoiseConfig:
    """Seeded noise of the oracle backend mimicking SAM + CLIP failures (all 0 = exact)."""

    seed: int = 0
    """Seed; the noise of a frame depends only on it and the frame stamp."""
    embedding_noise: float = 0.0
    """Per-view Gaussian noise on embeddings; cosine to the clean one is 1/sqrt(1 + s^2)."""
    label_swap_prob: float = 0.0
    """Probability that a segment takes a neighbouring segment's label in a view."""
    boundary_px: int = 0
    """Segments are eroded or dilated by up to this many pixels per view."""
    split_prob: float = 0.0
    """Probability that a segment is split in two at the subpart level (half of it at part)."""
    merge_prob: float = 0.0
    """Probability that a segment is merged with a neighbour at the whole level (half at part)."""
    drop_prob: float = 0.0
    """Probability that a segment is missing at a level."""
    delay_s: float = 0.0
    """Seconds added to the segmentation of each keyframe, to make the oracle as slow as a real model."""

    @classmethod
    def realistic(cls, seed: int = 0) -> OracleNoiseConfig:
        """Noise level typical of SAM masks + CLIP crops on indoor scenes."""
        return cls(seed=seed, embedding_noise=0.75, label_swap_prob=0.15, boundary_px=6,
                   split_prob=0.2, merge_prob=0.15, drop_prob=0.1)


@dataclass
class QueryConfig:
    """Text query and goal planning."""

    temperature: float = 0.1
    """Softmax temperature of the relevancy (LERF pairwise softmax), in cosine units."""
    negatives: list[str] = field(default_factory=lambda: ["object", "things", "stuff", "texture"])
    """Canonical negative phrases of the relevancy."""
    min_margin: float = 0.15
    """A Gaussian matches only if its cosine to the query beats every negative by this much."""
    keep_ratio: float = 0.7
    """...and its margin is at least this fraction of the best margin in the map."""
    level_margin_tolerance: float = 0.05
    """Granularity levels whose best margin is within this of the best level's answer together: a
    Gaussian joins the mask if it matches at a majority of them (levels that explain the query
    equally well outvote one level's segmentation errors, e.g. a merge of two objects)."""
    rank_margin_tolerance: float = 0.05
    """Instances whose mean margin is within this of the best instance's rank larger first (margins
    that close are noise; a few mislabelled Gaussians should not outrank the object)."""
    cluster_voxel_m: float = 0.05
    """Voxel size of the 3D connected-component clustering of the mask (m)."""
    min_instance_gaussians: int = 20
    """Clusters with fewer Gaussians are dropped."""
    min_confirmations: int = 3
    """An answer keeps an instance's Gaussians that at least this many keyframes confirmed, if at
    least half of them are (else all: an object seen once still answers). A Gaussian seen once is
    the least certain, and with stereo depth most misplaced ones are (1 = keep all)."""
    max_points: int = 5000
    """Most points reported per object."""
    robot_radius: float = 0.25
    """Robot footprint radius (m); goals keep this clearance from every mapped obstacle."""
    robot_height: float = 1.0
    """Obstacles are mapped points between floor + 5 cm and floor + robot_height (m)."""
    standoff: float = 0.6
    """Preferred distance from the goal to the object's nearest point (m)."""
    grid_resolution_m: float = 0.05
    """Cell size of the navigation grid (m)."""
    navigate_topic: str = "/goal_pose"
    """Where the node publishes the goal of a request with ``navigate`` (geometry_msgs/PoseStamped;
    /goal_pose is what Nav2's BT navigator and RViz's 2D Goal Pose use). Other answers publish
    their goal only on /query/goal_pose."""


@dataclass
class ModelsConfig:
    """The SAM/SAM2 + OpenCLIP semantic backend ('clip'): models, weights, devices, batching.

    Weights are read only from local files or the libraries' own caches; nothing is downloaded
    unless ``allow_download`` is set. ``langgs models`` lists what is configured and present.
    """

    mask_model: Literal["sam", "sam2"] = "sam2"
    """Mask generator: segment-anything ('sam') or SAM 2 ('sam2')."""
    sam_model_type: str = "vit_b"
    """SAM architecture: vit_b, vit_l, vit_h (or tiny_test, random weights for tests)."""
    sam_checkpoint: str = "~/.cache/langgs_ros/sam_vit_b_01ec64.pth"
    """SAM checkpoint file (from github.com/facebookresearch/segment-anything)."""
    sam2_model_type: str = "sam2.1_hiera_tiny"
    """SAM 2 architecture: sam2.1_hiera_{tiny,small,base_plus,large} (or tiny_test)."""
    sam2_checkpoint: str = "~/.cache/langgs_ros/sam2.1_hiera_tiny.pt"
    """SAM 2 checkpoint file (from github.com/facebookresearch/sam2)."""
    clip_model: str = "ViT-B-16"
    """open_clip model name (any of open_clip.list_models(), or tiny_test)."""
    clip_pretrained: str = "laion2b_s34b_b88k"
    """open_clip weights: a local checkpoint file, or a pretrained tag found in ``clip_cache_dir``."""
    clip_cache_dir: str = ""
    """Cache directory of open_clip/Hugging Face downloads; empty = the library default."""
    allow_download: bool = False
    """Let open_clip fetch missing weights from the hub (off: robots run offline)."""
    points_per_side: int = 32
    """Prompt grid of the mask generator (points_per_side^2 points at the nearest view)."""
    prompt_patches: int = 8
    """GAGS prompt density is decided per patch of a prompt_patches x prompt_patches grid."""
    max_prompt_factor: float = 4.0
    """GAGS eq. 1: at most this many times the base prompt density in a patch."""
    known_prompt_factor: float = 0.25
    """New or uncertain surface first: a patch whose surface the map has labelled from at least
    ``known_views`` views (90 % of its pixels) gets this fraction of its prompts, and its pixels
    that no mask covers neither vote nor fill. 1 = the same density everywhere."""
    known_views: int = 3
    """Views fused into a surface before it counts as labelled for ``known_prompt_factor``."""
    pred_iou_thresh: float = 0.8
    """Masks with a lower predicted IoU are dropped (-1 keeps all: random-weight test models)."""
    stability_score_thresh: float = 0.9
    """Masks with a lower stability score are dropped."""
    min_mask_region_frac: float = 0.0005
    """Masks smaller than this fraction of the image are dropped."""
    mask_batch: int = 0
    """Prompt points per mask-decoder batch; 0 = auto: 64 on CUDA, 1 on CPU (the decoder repeats the
    image embedding per prompt; on a CPU one prompt's tensors stay in cache: SAM 2.1 hiera-t,
    640x480, 51 ms per prompt at 1 against 93 ms at 64, measured on a 2-core EPYC)."""
    feature_kinds: Literal["both", "region", "context"] = "both"
    """CLIP features per segment: region-specific (crop, background blanked), context-aware (dense
    features pooled in the mask), or both (each query uses the kind with the higher relevancy)."""
    clip_batch: int = 32
    """Region crops per CLIP batch."""
    association: Literal["geometric", "sam2"] = "geometric"
    """Cross-view segment association: project the map (geometric), or SAM 2 video propagation
    from the previous keyframe (IoU > mapping.association_iou keeps the id)."""
    image_long_side: int = 640
    """Images are resized so their long side is at most this many pixels before segmentation."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:N."""
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """Autocast precision of the image encoders: auto = bf16 on CUDA if supported, fp32 on CPU."""


@dataclass
class RefineConfig:
    """Per-scene refinement by differentiable rendering (:mod:`langgs_ros.mapping.refine`)."""

    window: int = 8
    """Recent keyframes kept as training views (resized by ``scale``); 0 = no refinement."""
    background_iterations_per_second: float = 0.0
    """Node: refinement iterations per second while mapping is idle; 0 (the default) = none. Off by
    default: on a 2-core CPU one iteration costs about 1.3 s and each round's held-out check a few
    seconds, during which frames wait; try 1 on a GPU."""
    round_iterations: int = 10
    """Node: most iterations per background round; a waiting frame ends a round early."""
    iterations: int = 50
    """``langgs replay --refine``: iterations after the replay, in rounds of ``round_iterations``
    (about 1.3 s each at 320x240 on a 2-core CPU; 50 keep the real shelf frames within 2 minutes)."""
    holdout_every: int = 4
    """Every Nth non-keyframe is kept as a held-out view (non-keyframes never enter the map or the
    training views); a refinement round that raises the held-out loss is rolled back. 0 = none."""
    holdout_views: int = 3
    """The newest held-out views kept (each round renders a crop of each, before and after)."""
    time_budget_s: float = 600.0
    """Most seconds of one call of refine_map."""
    scale: float = 0.5
    """Training views are the keyframes resized by this factor."""
    crop_px: int = 128
    """Each iteration renders a random crop of at most crop_px x crop_px pixels of its view, which
    bounds the memory and time of an iteration (the differentiable rasteriser's cost grows with
    pixels x Gaussians); 0 = the whole view."""
    lr_means: float = 1e-4
    """Adam learning rate of the means (m)."""
    lr_scales: float = 5e-3
    """Adam learning rate of the log-scales."""
    lr_quats: float = 1e-3
    """Adam learning rate of the rotations."""
    lr_opacity: float = 2e-2
    """Adam learning rate of the opacity logits."""
    lr_colors: float = 1e-2
    """Adam learning rate of the colours (0..1)."""
    ssim_weight: float = 0.2
    """lambda of the photometric loss (1 - lambda) L1 + lambda (1 - SSIM) / 2."""
    depth_weight: float = 5.0
    """Weight of the L1 depth loss (m) on pixels with valid depth. Depth errors of indoor maps are
    millimetres to centimetres, so at 0.5 this term was 1 to 3 % of the loss and depth drifted
    while colours were fitted (real shelf frames: held-out depth error 2.92 -> 3.01 mm); at 5 it fell
    to 2.64 mm with the same PSNR gain."""
    semantic_dim: int = 0
    """Low-dimensional semantic feature per Gaussian, decoded to codebook entries; confident decoded
    codes replace the voted ones (needs codebook fusion). 0 = off, the default: on the synthetic
    scene under realistic noise it did not raise 3D IoU within CPU budgets (see README); try 16."""
    semantic_weight: float = 0.1
    """Weight of the codebook cross-entropy (CCL-LGS eq. 9)."""
    lr_semantic: float = 0.02
    """Adam learning rate of the per-Gaussian semantic features and of the decoder (x 0.1)."""
    granularity_weight: float = 0.1
    """Weight of GAGS' granularity-weighted distillation term (0 = plain per-level cross-entropy)."""
    entropy_weight: float = 0.05
    """GAGS entropy regularisation of the decoded granularity weights."""
    code_min_prob: float = 0.6
    """A Gaussian's code is replaced by its decoded code only with at least this probability."""
    densify_grad: float = 1e-3
    """Densify Gaussians whose mean position gradient (norm, averaged over the iterations that
    reached them, at least 3) exceeds this."""
    densify_max_fraction: float = 0.005
    """Most new Gaussians per round, as a fraction of the refined ones."""
    split_scale_m: float = 0.01
    """Densified Gaussians larger than this (m) are split in two, smaller ones are cloned."""
    prune_opacity: float = 0.02
    """Gaussians whose opacity falls below this are removed."""
    backend: Literal["auto", "gsplat", "torch"] = "auto"
    """Renderer: auto (gsplat on CUDA, PyTorch otherwise), gsplat or torch."""
    device: str = "auto"
    """Torch device of refinement: auto (cuda if available, else cpu), cpu, cuda, cuda:N."""


@dataclass
class SemanticsConfig:
    """The semantics stage of the runtime (node, ``langgs replay --realtime``): 2D segmentation runs
    behind geometry on its own thread, on the keyframes geometry accepted."""

    max_pending: int = 32
    """Keyframes that may wait for their semantics; when full, the one whose view is most covered
    already is dropped (counted). Each holds its images, the prompt guidance and the ids, blocks,
    rows and pixels of the Gaussians it saw: about 11 MB at 640x480 (measured: RSS rose 350 MB as
    the backlog filled to 32 in benchmarks/bench_scale.py --building), so lower it on a robot short
    of memory."""
    lag_warn_s: float = 30.0
    """Status turns WARN when the newest labelled keyframe is this much older than the newest mapped
    one (recorded time, s)."""
    prompts: Literal["geometry", "grid"] = "geometry"
    """Where the clip backend prompts SAM: one prompt per geometric segment of the keyframe's depth,
    new or unlabelled surface first (geometry; :mod:`langgs_ros.semantics.prompt_planner`), or the
    models.points_per_side grid with GAGS density (grid)."""
    max_prompts: int = 48
    """Most prompts per keyframe with ``prompts: geometry`` (the mask decoder's cost is per prompt).
    Measured by benchmarks/bench_prompts.py (instances with >= 400 px of valid depth that get a
    prompt): the 640x480 room 100 % at 24.3 prompts per keyframe on average (cap 24: 99.8 %), a
    6-room building's first 400 keyframes 99.0 % at 20.5 (cap 24: 97.6 %); above 32 the cap no
    longer binds there (p95 31), so 48 leaves room for cluttered scenes at no cost elsewhere."""


@dataclass
class PipelineConfig:
    """All settings of a replay."""

    input: InputConfig = field(default_factory=InputConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    oracle: OracleNoiseConfig = field(default_factory=OracleNoiseConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    semantics: SemanticsConfig = field(default_factory=SemanticsConfig)


_BIG = 1.0e9
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    # section -> field -> (least, greatest) valid value, both inclusive
    "input": {
        "sync_tolerance_s": (0.0, 10.0), "tf_tolerance_s": (0.0, 10.0), "camera_info_tolerance_s": (-1.0, 3600.0),
        "max_depth_m": (0.01, 1000.0), "min_depth_m": (0.0, 100.0), "max_image_pixels": (1, 1 << 28),
        "reanchor_on_map_odom_jump_m": (0.0, 1000.0), "max_speed_mps": (0.0, 1000.0),
        "max_turn_rate_dps": (0.0, 100_000.0), "max_gap_s": (0.01, 1.0e6),
    },
    "mapping": {
        "pixel_stride": (1, 64), "keyframe_translation_m": (0.0, 100.0), "keyframe_rotation_deg": (0.0, 180.0),
        "surface_tolerance": (1e-4, 1.0), "max_disagreement": (0.0, 1.0), "initial_opacity": (0.01, 1.0),
        "block_size_m": (0.25, 64.0), "ram_budget_mb": (0.0, 1.0e7),
        "codebook_size": (2, 32767), "codebook_spawn_cos": (-1.0, 1.0), "codebook_steps": (0, 1000),
        "codebook_batch": (1, 65536), "codebook_lr": (0.0, 10.0), "codebook_pull": (0.0, 100.0),
        "codebook_push": (0.0, 100.0), "codebook_margin": (-1.0, 1.0), "replay_size": (1, 10_000_000),
        "association_iou": (0.0, 1.0), "relabel_window": (0, 1_000_000),
        "relabel_max_disagreement": (0.0, 1.0), "stale_track_views": (1, 1000), "no_segment_vote_weight": (0.0, 1.0),
        "boundary_abstain_frac": (0.0, 0.5),
        "occlusion_abstain_frac": (0.0, 0.5), "occlusion_depth_jump": (0.001, 10.0), "stereo_views": (1, 32),
        "stereo_planes": (2, 1024), "stereo_min_depth_m": (0.01, 100.0), "stereo_max_depth_m": (0.01, 1000.0),
        "stereo_scale": (0.05, 1.0), "stereo_min_confidence": (0.0, 1.0), "stereo_min_baseline_m": (0.0, 10.0),
        "stereo_refine_steps": (0, 64), "stereo_consistent_views": (0, 32), "stereo_consistency_tol": (0.001, 1.0),
        "stereo_tolerance_per_m": (0.0, 1.0),
    },
    "oracle": {
        "seed": (0, 2**31 - 1), "embedding_noise": (0.0, 100.0), "label_swap_prob": (0.0, 1.0),
        "boundary_px": (0, 100), "split_prob": (0.0, 1.0), "merge_prob": (0.0, 1.0), "drop_prob": (0.0, 1.0),
        "delay_s": (0.0, 600.0),
    },
    "semantics": {"max_pending": (1, 1000), "lag_warn_s": (0.0, _BIG), "max_prompts": (1, 4096)},
    "query": {
        "temperature": (1e-4, 10.0), "min_margin": (-2.0, 2.0), "keep_ratio": (0.0, 1.0),
        "level_margin_tolerance": (0.0, 2.0), "rank_margin_tolerance": (0.0, 2.0), "cluster_voxel_m": (0.005, 10.0),
        "min_instance_gaussians": (1, 1_000_000_000), "min_confirmations": (1, 16), "max_points": (1, 10_000_000), "robot_radius": (0.01, 10.0),
        "robot_height": (0.05, 10.0), "standoff": (0.0, 20.0), "grid_resolution_m": (0.01, 2.0),
    },
    "models": {
        "points_per_side": (1, 256), "prompt_patches": (1, 64), "max_prompt_factor": (1.0, 64.0),
        "known_prompt_factor": (0.0, 1.0), "known_views": (1, 255),
        "pred_iou_thresh": (-1.0, 1.0), "stability_score_thresh": (0.0, 1.0), "min_mask_region_frac": (0.0, 1.0),
        "mask_batch": (0, 4096), "clip_batch": (1, 4096), "image_long_side": (32, 8192),
    },
    "refine": {
        "window": (0, 1000), "background_iterations_per_second": (0.0, 1000.0), "round_iterations": (1, 10000),
        "iterations": (0, 1_000_000), "holdout_every": (0, 100_000), "holdout_views": (0, 100),
        "time_budget_s": (0.0, _BIG), "scale": (0.05, 1.0), "crop_px": (0, 8192),
        "lr_means": (0.0, 10.0), "lr_scales": (0.0, 10.0), "lr_quats": (0.0, 10.0), "lr_opacity": (0.0, 10.0),
        "lr_colors": (0.0, 10.0), "ssim_weight": (0.0, 1.0), "depth_weight": (0.0, 100.0), "semantic_dim": (0, 256),
        "semantic_weight": (0.0, 100.0), "lr_semantic": (0.0, 10.0), "granularity_weight": (0.0, 100.0),
        "entropy_weight": (0.0, 100.0), "code_min_prob": (0.0, 1.0), "densify_grad": (0.0, 1.0),
        "densify_max_fraction": (0.0, 1.0), "split_scale_m": (0.0, 10.0), "prune_opacity": (0.0, 1.0),
    },
}
"""Valid range of every numeric setting; checked by :func:`validate_config` wherever a config is
loaded (files, overrides, node parameters) and given to ROS as the parameter's range."""


def field_range(name: str) -> tuple[float, float] | None:
    """(least, greatest) valid value of ``section.field``, or None for a non-numeric field."""
    section, _, key = name.partition(".")
    return RANGES.get(section, {}).get(key)


def validate_config(config: PipelineConfig) -> None:
    """Raise ConfigError naming the first field outside its range (or a pair that contradicts)."""
    for section, ranges in RANGES.items():
        values = getattr(config, section)
        for key, (lo, hi) in ranges.items():
            value = getattr(values, key)
            if not lo <= value <= hi:  # also catches NaN
                raise ConfigError(f"'{section}.{key}' must be in [{lo:g}, {hi:g}], got {value!r}")
    pairs = [("input", "min_depth_m", "max_depth_m"), ("mapping", "stereo_min_depth_m", "stereo_max_depth_m")]
    for section, low, high in pairs:
        values = getattr(config, section)
        if getattr(values, low) >= getattr(values, high):
            raise ConfigError(f"'{section}.{low}' ({getattr(values, low)}) must be below "
                              f"'{section}.{high}' ({getattr(values, high)})")
    for text in config.query.negatives:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("'query.negatives' must be non-empty phrases")
    if not _TOPIC_NAME.fullmatch(config.query.navigate_topic):
        raise ConfigError(f"'query.navigate_topic' must be a ROS topic name such as /goal_pose, got "
                          f"{config.query.navigate_topic!r}")


_TOPIC_NAME = re.compile(r"~?/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
"""A ROS 2 topic name (absolute, relative or private; no substitutions)."""


REMOVED: dict[str, str] = {
    "mapping.capacity": "the map no longer deletes observed surface when it is large; blocks beyond "
                        "'mapping.ram_budget_mb' wait on disk instead: remove the key (or set ram_budget_mb)",
}
"""Settings that existed once, and what replaced them (an old config file gets this, not 'unknown key')."""


def _update_dataclass(obj: Any, values: dict[str, Any], where: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = get_type_hints(type(obj))
    for key, value in values.items():
        if f"{where}{key}" in REMOVED:
            raise ConfigError(f"'{where}{key}' was removed: {REMOVED[f'{where}{key}']}")
        if key not in fields:
            raise ConfigError(f"unknown key '{where}{key}' (known: {', '.join(sorted(fields))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{where}{key}' must be a mapping")
            _update_dataclass(current, value, f"{where}{key}.")
            continue
        expected = type(current)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(
                f"'{where}{key}' must be {expected.__name__}, got {type(value).__name__} {value!r}"
            )
        if get_origin(hints[key]) is Literal and value not in get_args(hints[key]):
            choices = ", ".join(map(str, get_args(hints[key])))
            raise ConfigError(f"'{where}{key}' must be one of {choices}, got {value!r}")
        setattr(obj, key, value)


def _yaml_load(text: str) -> Any:
    """YAML with numbers as ROS 2 parameter files read them: ``1e-3`` and ``1.0e9`` are floats
    (PyYAML follows YAML 1.1, which wants a dot and a signed exponent, and reads them as strings)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults, updated from a YAML/JSON file (if given) and then from ``overrides``."""
    config = PipelineConfig()
    if path is not None:
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                              "save it as UTF-8 YAML or JSON") from None
        if "\0" in text:
            raise ConfigError(f"config file {path} holds NUL bytes: it is not a text file")
        try:
            if path.suffix == ".json":
                values = json.loads(text)
            else:
                values = _yaml_load(text)
        except Exception as exc:  # noqa: BLE001 - any parser error is a config error
            raise ConfigError(f"config file {path} is not valid {path.suffix[1:] or 'YAML'}: {exc}") from None
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        _update_dataclass(config, values, "")
    if overrides:
        _update_dataclass(config, overrides, "")
    validate_config(config)
    return config


def override(config: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """``config`` updated in place with ``values`` (sections of fields, as a file's), checked
    against the ranges; raises ConfigError naming a bad key or value."""
    _update_dataclass(config, values, "")
    validate_config(config)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict copy of a config dataclass (for saving next to a map)."""
    return dataclasses.asdict(config)
