"""Planar hole filling of color-only depth (issue 18, item 5) and the sweep's consistency check."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from langgs_ros.errors import InputError
from langgs_ros.mapping.plane_fill import PlaneFillConfig, fill_planar_holes
from langgs_ros.mapping.plane_sweep import consistent_views
from langgs_ros.types import CameraIntrinsics

H, W = 120, 160
K = CameraIntrinsics(W, H, 100.0, 100.0, (W - 1) / 2, (H - 1) / 2)
ROWS, COLS = np.mgrid[0:H, 0:W]
CONFIG = PlaneFillConfig(scale=1.0)


def plane_depth(normal: tuple[float, float, float], point: tuple[float, float, float]) -> np.ndarray:
    """Depth [H, W] of the plane through ``point`` with ``normal`` (optical frame)."""
    n = np.asarray(normal, float)
    rays = np.stack([(COLS - K.cx) / K.fx, (ROWS - K.cy) / K.fy, np.ones((H, W))], -1)
    return (n @ np.asarray(point) / (rays @ n)).astype(np.float32)


def framed_patch(depth: np.ndarray, inner: tuple[int, int, int, int] = (26, 94, 36, 124)
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stereo-like depth: NaN inside a textureless patch, rgb with a bright frame around it, the patch)."""
    rgb = np.full((H, W, 3), 90, np.uint8)
    r0, r1, c0, c1 = inner
    rgb[r0 - 6:r1 + 6, c0 - 6:c1 + 6] = 200
    rgb[r0:r1, c0:c1] = 90
    patch = np.zeros((H, W), bool)
    patch[r0:r1, c0:c1] = True
    return np.where(patch, np.nan, depth).astype(np.float32), rgb, patch


def test_a_hole_whose_border_is_one_plane_is_filled_with_it():
    truth = plane_depth((0.0, -0.6, 1.0), (0.0, 0.0, 2.0))
    depth, rgb, patch = framed_patch(truth)
    out, filled = fill_planar_holes(depth, rgb, K, None, CONFIG)
    assert filled[patch].mean() > 0.9 and not filled[~patch].any()
    err = np.abs(out[filled] - truth[filled]) / truth[filled]
    assert err.max() < 0.01
    assert np.array_equal(out[~patch], depth[~patch])  # measured depth untouched


def test_a_border_on_two_planes_leaves_the_hole_empty():
    truth = np.where(COLS < W // 2, 2.0, 3.0).astype(np.float32)  # a step: not one plane
    depth, rgb, patch = framed_patch(truth)
    out, filled = fill_planar_holes(depth, rgb, K, None, CONFIG)
    assert not filled.any() and np.isnan(out[patch]).all()


def test_a_border_that_is_a_line_fits_any_plane_and_fills_nothing():
    # only one row of depth (a wall's junction with the floor): every plane through it fits
    truth = plane_depth((0.0, 0.0, 1.0), (0.0, 0.0, 2.0))
    depth = np.full((H, W), np.nan, np.float32)
    depth[100:103] = truth[100:103]
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb[100:103] = 200
    _, filled = fill_planar_holes(depth, rgb, K, None, CONFIG)
    assert not filled.any()


def floor_view() -> tuple[np.ndarray, np.ndarray]:
    """Depth of a floor 1 m below a camera looking 30 degrees down, and the floor plane (n, d)."""
    down = np.radians(30.0)
    normal = np.array([0.0, -np.cos(down), -np.sin(down)])  # floor normal (up) in the optical frame
    point = -normal * 1.0  # the floor is 1 m from the camera along -up
    depth = plane_depth(tuple(normal), tuple(point))
    return np.where(depth > 0, depth, np.nan).astype(np.float32), np.append(normal, -normal @ point)


def test_the_floor_from_the_base_frame_fills_a_floor_its_occluders_hide():
    truth, floor = floor_view()
    depth, rgb, patch = framed_patch(truth, (60, 110, 30, 130))
    # an object stands in front of the floor along the upper half of the frame: those border depths
    # are nearer than the floor, so no plane fits the border, but the floor behind is consistent
    occluder = (ROWS < 80) & ~patch
    depth[occluder] = truth[occluder] * 0.5
    assert not fill_planar_holes(depth, rgb, K, None, CONFIG)[1].any()
    out, filled = fill_planar_holes(depth, rgb, K, floor, dataclasses.replace(CONFIG, border_planes=False))
    assert filled[patch].mean() > 0.9
    assert np.abs(out[filled] - truth[filled]).max() < 1e-3 * truth[filled].max()


def test_the_floor_is_not_filled_where_the_border_is_seen_behind_it():
    truth, floor = floor_view()
    depth, rgb, patch = framed_patch(truth, (60, 110, 30, 130))
    pit = 1.5 * truth  # a pit: the border lies beyond the floor plane, on a plane of its own
    depth[~patch] = pit[~patch]
    out, filled = fill_planar_holes(depth, rgb, K, floor, CONFIG)
    assert filled[patch].mean() > 0.9
    assert np.allclose(out[filled], pit[filled], rtol=0.01)  # the pit's plane, not the floor
    # a rough pit under half of the border: no plane fits the border, and the floor, which fits the
    # other half, is refused because the border is seen through it
    rough = np.where(ROWS >= 85, truth * np.random.default_rng(0).uniform(1.3, 1.7, (H, W)), truth)
    depth[~patch] = rough[~patch]
    _, filled = fill_planar_holes(depth, rgb, K, floor, CONFIG)
    assert not filled.any()


def test_consistency_counts_the_views_that_agree():
    wall = np.full((H, W), 2.0, np.float32)
    T_ref = np.eye(4)
    T_moved = np.eye(4)
    T_moved[0, 3] = 0.2  # 20 cm to the right: the same wall, 2 m away
    wrong = np.full((H, W), 2.5, np.float32)
    count = consistent_views(wall, K, T_ref, [(wall, K, T_moved), (wrong, K, T_moved)], 0.03)
    # the moved camera sees the wall 10 px further left: the reference's first 10 columns are outside it
    assert (count[:, 11:] == 1).all() and (count[:, :9] == 0).all()


def test_color_only_keyframes_fill_a_plain_patch_with_unconfirmed_gaussians():
    from langgs_ros.config import MappingConfig, OracleNoiseConfig
    from langgs_ros.mapping.mapper import Mapper
    from langgs_ros.semantics.backend import create_backend
    from langgs_ros.types import Frame

    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((H, W + 200)) * 255).astype(np.float32), (0, 0), 1.5)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    tex[30:90, 150:210] = 128  # a plain patch on the wall: no stereo depth inside it
    mapper = Mapper(MappingConfig(pixel_stride=2, keyframe_translation_m=0.05, stereo_scale=1.0,
                                  stereo_plane_fill="planes"),
                    create_backend("oracle", OracleNoiseConfig()))
    base = np.eye(4)
    base[2, 3] = -0.8  # the robot's base frame, on a floor 0.8 m below the camera
    for i, tx in enumerate([0.0, 0.06, 0.12, 0.18]):
        shift = 100 + K.fx * tx / 1.5  # the wall is 1.5 m away
        gray = cv2.warpAffine(tex, np.float32([[1, 0, -shift], [0, 1, 0]]), (W, H)).astype(np.uint8)
        T = np.eye(4)
        T[0, 3] = tx
        frame = Frame(i, "cam", np.repeat(gray[..., None], 3, axis=2), K, T, T_world_base=T @ base,
                      instances=np.ones((H, W), np.uint16), labels={1: "poster"})
        try:
            mapper.integrate(frame)
        except InputError:  # the first frame has no earlier view to match
            pass
    assert mapper.floor_z() == pytest.approx(-0.8)
    gm = mapper.store
    unconfirmed = gm["confidence"] == 0
    assert unconfirmed.sum() > 100  # the patch, filled with the wall's plane
    assert np.abs(gm["means"][unconfirmed, 2] - 1.5).max() < 0.05
    # a fill is a guess: labels come only with measured depth
    labelled = (gm["tracks"] >= 0).any(axis=1)
    assert labelled[~unconfirmed].mean() > 0.9 and not labelled[unconfirmed].any()


def test_a_hole_leaking_into_another_color_fills_only_its_own_color():
    truth = plane_depth((0.0, -0.6, 1.0), (0.0, 0.0, 2.0))
    depth, rgb, patch = framed_patch(truth)
    # the right end of the patch turns red through a ramp too gentle for an edge (a gap in the
    # silhouette of an object standing there): its pixels are another surface
    ramp = np.clip((COLS - 100) * 4, 0, 120)
    rgb[patch, 0] = (90 + ramp)[patch]
    other = patch & (ramp > 25)
    out, filled = fill_planar_holes(depth, rgb, K, None, CONFIG)
    assert filled[patch & (ramp == 0)].mean() > 0.9
    assert not filled[other].any()


def test_the_floor_plane_in_the_camera_comes_from_the_base_frame():
    from langgs_ros.mapping.stereo_depth import floor_in_camera
    from langgs_ros.types import Frame

    # optical frame looking straight down from 1.2 m above the base frame (z up, on the floor)
    T_world_cam = np.eye(4)
    T_world_cam[:3, :3] = [[1, 0, 0], [0, -1, 0], [0, 0, -1]]
    T_world_cam[:3, 3] = [2.0, 1.0, 1.2]
    T_world_base = np.eye(4)
    T_world_base[:3, 3] = [2.3, 1.0, 0.0]
    rgb = np.zeros((H, W, 3), np.uint8)
    plane = floor_in_camera(Frame(0, "cam", rgb, K, T_world_cam, T_world_base=T_world_base))
    assert abs(plane[:3] @ [0, 0, 1.2] + plane[3]) < 1e-9  # the point 1.2 m along the optical axis
    assert floor_in_camera(Frame(0, "cam", rgb, K, T_world_cam)) is None
