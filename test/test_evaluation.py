"""Scoring of query answers: the voxel IoU and the figures that explain it."""

from types import SimpleNamespace

import numpy as np
import pytest

from langgs_ros.config import QueryConfig
from langgs_ros.evaluation import evaluate_queries, voxel_iou, voxel_overlap


def _plane(z: float, lo: float = 0.0, hi: float = 0.2, step: float = 0.01) -> np.ndarray:
    """Points on a horizontal square at height ``z`` (m), ``step`` apart."""
    g = np.arange(lo + step / 2, hi, step)
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], 1)


def test_voxel_overlap_counts_shared_cells_of_each_set() -> None:
    truth = _plane(0.02)  # 4 x 4 cells of 5 cm, one layer
    pred = np.concatenate([truth[truth[:, 0] < 0.1], _plane(0.07)[:40]])  # half the cells, plus cells above
    iou, precision, recall = voxel_overlap(pred, truth)
    # pred: 8 shared cells + the cells of the 40 points above (2 rows of 20 points: x < 0.2, y < 0.02)
    assert recall == pytest.approx(8 / 16)
    assert precision == pytest.approx(8 / (8 + 4))
    assert iou == pytest.approx(8 / (12 + 16 - 8)) == voxel_iou(pred, truth)
    assert voxel_overlap(np.zeros((0, 3)), truth) == (0.0, 0.0, 0.0)


def test_one_centimetre_across_a_voxel_face_loses_the_whole_iou_and_the_surface_error_says_why() -> None:
    """A surface 5 mm below a voxel face, answered 1 cm too high: every voxel is wrong, yet the
    answer is 1 cm from the surface, which the score reports next to the IoU."""
    surface = _plane(0.045)
    truth = [{"label": "tray", "surface_points": surface.tolist(),
              "bbox_min": [0.0, 0.0, 0.0], "bbox_max": [0.2, 0.2, 0.1]}]
    answer = surface + [0.0, 0.0, 0.01]
    engine = SimpleNamespace(config=QueryConfig(), query=lambda text: SimpleNamespace(
        objects=[SimpleNamespace(points=answer, centroid=answer.mean(0))], goal_pose=None))
    (score,) = evaluate_queries(engine, truth)
    assert (score.iou, score.precision, score.recall) == (0.0, 0.0, 0.0)
    assert score.surface_error_p50_m == pytest.approx(0.01) and score.surface_error_p90_m == pytest.approx(0.01)
    assert score.centroid_in_box and not score.goal_found
