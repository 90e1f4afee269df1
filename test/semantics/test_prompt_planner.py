"""Prompts from geometry: every object in a ray-cast scene gets one, new surface before labelled."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.semantics.prompt_planner import depth_edges, geometric_segments, plan_prompts

W, H, F = 320, 240, 250.0


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """(depth [H, W] m, instance ids [H, W]) seen from the origin along +z (optical frame, y down):
    a wall (1) at z = 4, a floor (2) at y = 1, a box (3) on the floor, a thin upright cylinder (4)
    and a flat slab (5) lying on the box's top."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    a, b = (u - W / 2) / F, (v - H / 2) / F  # ray (a, b, 1): a point at depth z is (a z, b z, z)
    depth = np.full((H, W), np.inf)
    ids = np.zeros((H, W), np.int32)

    def put(z: np.ndarray, hit: np.ndarray, ident: int) -> None:
        closer = hit & (z > 0) & (z < depth)
        depth[closer] = z[closer]
        ids[closer] = ident

    put(np.full((H, W), 4.0), np.ones((H, W), bool), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_floor = 1.0 / b
    put(z_floor, b > 0, 2)

    def box(lo: tuple[float, float, float], hi: tuple[float, float, float], ident: int) -> None:
        d = np.stack([a, b, np.ones_like(a)])
        with np.errstate(divide="ignore", invalid="ignore"):
            t0 = np.stack([(lo[i]) / d[i] for i in range(3)])
            t1 = np.stack([(hi[i]) / d[i] for i in range(3)])
        near = np.nanmax(np.minimum(t0, t1), axis=0)
        far = np.nanmin(np.maximum(t0, t1), axis=0)
        put(near, (near <= far) & (near > 0), ident)  # t is the depth z, as the ray's z is 1

    box((-0.9, 0.5, 2.0), (0.1, 1.0, 2.8), 3)  # box on the floor: top at y = 0.5
    box((-0.6, 0.47, 2.2), (-0.2, 0.5, 2.5), 5)  # a 3 cm slab lying on its top
    # upright cylinder, radius 3 cm (6 pixels wide: all crease), axis x = 0.5, z = 2.4, from the floor up to y = 0.4
    cx, cz, r = 0.5, 2.4, 0.03
    qa, qb, qc = a**2 + 1, -2 * (a * cx + cz), cx**2 + cz**2 - r**2
    disc = qb**2 - 4 * qa * qc
    with np.errstate(invalid="ignore"):
        z = (-qb - np.sqrt(disc)) / (2 * qa)
    put(z, (disc > 0) & (b * z > 0.4) & (b * z < 1.0), 4)
    depth[~np.isfinite(depth)] = np.nan
    return depth.astype(np.float32), ids


def _prompted(points: np.ndarray, ids: np.ndarray) -> set[int]:
    cols = np.clip(np.round(points[:, 0]).astype(int), 0, W - 1)
    rows = np.clip(np.round(points[:, 1]).astype(int), 0, H - 1)
    return set(ids[rows, cols].tolist())


def test_every_object_of_the_scene_gets_a_prompt() -> None:
    depth, ids = _scene()
    assert set(np.unique(ids).tolist()) == {1, 2, 3, 4, 5}
    plan = plan_prompts(depth, F, F, H, W, max_prompts=48)
    assert 5 <= len(plan.points) <= 48
    assert _prompted(plan.points, ids) == {1, 2, 3, 4, 5}
    assert plan.fallback == 0 and not plan.known_unprompted.any()


def test_segments_cut_at_jumps_and_creases() -> None:
    depth, ids = _scene()
    jumps, creases = depth_edges(depth, F, F)
    assert jumps[ids == 4].any()  # the cylinder's silhouette against the wall
    assert creases[ids == 3].any()  # the box's edges
    labels, count = geometric_segments(depth, F, F, min_area=20)
    assert count >= 5
    # the slab on the box's top and the box's top are different segments
    slab = np.bincount(labels[(ids == 5) & (labels >= 0)]).argmax()
    assert not np.any((labels == slab) & (ids == 3) & ~creases & ~jumps)


def test_the_cap_holds_and_labelled_surface_waits() -> None:
    depth, ids = _scene()
    views = np.zeros((H // 8, W // 8), np.float32)
    views[(ids == 1)[4::8, 4::8]] = 5  # the wall is well labelled
    full = plan_prompts(depth, F, F, H, W, max_prompts=48, labelled_views=views, known_views=3)
    assert 1 in _prompted(full.points, ids)  # room left: labelled surface still gets a prompt, last
    n_new = len(full.points) - 1
    capped = plan_prompts(depth, F, F, H, W, max_prompts=n_new, labelled_views=views, known_views=3)
    assert len(capped.points) == n_new
    assert 1 not in _prompted(capped.points, ids)
    assert capped.known_unprompted.shape == (H, W)
    assert capped.known_unprompted[ids == 1].mean() > 0.9  # the wall: no prompt, so no evidence there
    assert not capped.known_unprompted[ids == 4].any()


def test_missing_depth_is_prompted_by_a_sparse_grid() -> None:
    depth, ids = _scene()
    depth[:, : W // 2] = np.nan
    plan = plan_prompts(depth, F, F, H, W, max_prompts=64)
    assert plan.fallback > 0
    grid = plan.points[len(plan.points) - plan.fallback :]
    assert np.all(grid[:, 0] < W / 2)
    blank = plan_prompts(np.full((H, W), np.nan, np.float32), F, F, H, W, max_prompts=10)
    assert len(blank.points) == blank.fallback == 10 and blank.segments == 0


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (3, 3)])
def test_degenerate_sizes_plan_without_error(shape: tuple[int, int]) -> None:
    plan = plan_prompts(np.ones(shape, np.float32), 50.0, 50.0, 48, 64, max_prompts=8)
    assert len(plan.points) <= 8
    assert np.all((plan.points >= -0.5) & (plan.points <= [64, 48]))
