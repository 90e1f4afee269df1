"""PyTorch rasteriser vs a brute-force per-pixel reference: values and gradients (issue 5, item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langgs_ros.rendering import render
from langgs_ros.rendering.projection import gaussian_alpha, project_gaussians

W, H = 37, 29  # not multiples of the tile size


def reference(means, quats, scales, opacities, features, T, K):  # noqa: ANN001, N803
    """Every pixel composites every Gaussian, globally sorted by depth: no tiles, no boxes."""
    proj = project_gaussians(means, quats, scales, opacities, T, K, W, H)
    order = torch.argsort(proj.depths)
    proj.means2d, proj.conics, proj.depths, proj.opacities = (
        proj.means2d[order], proj.conics[order], proj.depths[order], proj.opacities[order])
    feats = features[proj.index][order]
    py, px = torch.meshgrid(torch.arange(H, dtype=means.dtype), torch.arange(W, dtype=means.dtype), indexing="ij")
    out_f, out_d, out_a = [], [], []
    for y, x in zip(py.reshape(-1), px.reshape(-1)):  # one pixel at a time
        alpha = gaussian_alpha(proj, x[None], y[None])[0]
        t = torch.ones((), dtype=means.dtype)
        f = torch.zeros(feats.shape[1], dtype=means.dtype)
        d = a = torch.zeros((), dtype=means.dtype)
        for i in range(len(alpha)):
            w = alpha[i] * t
            f, d, a = f + w * feats[i], d + w * proj.depths[i], a + w
            t = t * (1 - alpha[i])
        out_f.append(f)
        out_d.append(torch.where(a > 0, d / a.clamp_min(1e-12), torch.zeros_like(a)))
        out_a.append(a)
    return torch.stack(out_f).reshape(H, W, -1), torch.stack(out_d).reshape(H, W), torch.stack(out_a).reshape(H, W)


def scene(n: int = 12, seed: int = 0, channels: int = 5):
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    means = torch.cat([(torch.rand(n, 2, generator=g, dtype=dt) - 0.5) * 1.2,
                       1.5 + torch.rand(n, 1, generator=g, dtype=dt)], dim=1)
    quats = torch.randn(n, 4, generator=g, dtype=dt)
    scales = 0.02 + 0.12 * torch.rand(n, 3, generator=g, dtype=dt)
    opacities = 0.2 + 0.75 * torch.rand(n, generator=g, dtype=dt)
    features = torch.rand(n, channels, generator=g, dtype=dt)
    T = torch.eye(4, dtype=dt)
    K = torch.tensor([[30.0, 0, (W - 1) / 2], [0, 30.0, (H - 1) / 2], [0, 0, 1]], dtype=dt)
    return [means, quats, scales, opacities, features], T, K


def test_values_match_the_brute_force_reference():
    params, T, K = scene()
    out = render(*params, T, K, W, H, backend="torch", tile=8)
    ref_f, ref_d, ref_a = reference(*params, T, K)
    assert out.backend == "torch" and out.features.shape == (H, W, 5)
    assert out.alpha.max() > 0.5  # the scene covers the view
    torch.testing.assert_close(out.features, ref_f, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out.depth, ref_d, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out.alpha, ref_a, rtol=1e-9, atol=1e-10)


def test_gradients_match_the_brute_force_reference():
    params, T, K = scene(n=8, seed=1, channels=3)
    weights = torch.rand(H, W, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def grads(fn):  # noqa: ANN001
        leaves = [p.clone().requires_grad_(True) for p in params]
        f, d, a = fn(leaves)
        loss = (torch.cat([f, d[..., None], a[..., None]], dim=-1) * weights).sum()
        return torch.autograd.grad(loss, leaves)

    tiled = grads(lambda p: (lambda o: (o.features, o.depth, o.alpha))(render(*p, T, K, W, H, backend="torch", tile=8)))
    brute = grads(lambda p: reference(*p, T, K))
    for name, a, b in zip(["means", "quats", "scales", "opacities", "features"], tiled, brute):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=name)
    assert tiled[0].abs().sum() > 0 and tiled[2].abs().sum() > 0  # geometry gets gradients


def test_gradients_agree_with_finite_differences():
    params, T, K = scene(n=4, seed=3, channels=2)
    means = params[0].clone().requires_grad_(True)
    out = render(means, *params[1:], T, K, W, H, backend="torch")
    out.features.sum().backward()
    eps = 1e-6
    for i, j in [(0, 0), (1, 1), (2, 2)]:
        plus, minus = params[0].clone(), params[0].clone()
        plus[i, j] += eps
        minus[i, j] -= eps
        fd = (render(plus, *params[1:], T, K, W, H, backend="torch").features.sum()
              - render(minus, *params[1:], T, K, W, H, backend="torch").features.sum()) / (2 * eps)
        assert means.grad[i, j].item() == pytest.approx(fd.item(), rel=1e-4, abs=1e-7)


def test_occlusion_and_empty_views():
    dt = torch.float64
    means = torch.tensor([[0.0, 0, 2.0], [0.0, 0, 1.0]], dtype=dt)  # the red one is behind
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=dt)
    scales = torch.full((2, 3), 0.3, dtype=dt)
    opac = torch.tensor([0.99, 0.99], dtype=dt)
    feats = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=dt)
    K = torch.tensor([[30.0, 0, (W - 1) / 2], [0, 30.0, (H - 1) / 2], [0, 0, 1]], dtype=dt)
    out = render(means, quats, scales, opac, feats, torch.eye(4, dtype=dt), K, W, H, backend="torch")
    centre = out.features[H // 2, W // 2]
    assert centre[1] > 0.95 and centre[0] < 0.05  # the front Gaussian hides the back one
    assert out.depth[H // 2, W // 2].item() == pytest.approx(1.0, abs=0.02)
    behind = torch.eye(4, dtype=dt)
    behind[2, 3] = -5.0  # both Gaussians behind the camera
    empty = render(means, quats, scales, opac, feats, behind, K, W, H, backend="torch")
    assert empty.alpha.abs().sum() == 0 and empty.depth.abs().sum() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's renderer needs a CUDA GPU (none here)")
def test_gsplat_and_torch_backends_agree_on_a_gpu():
    params, T, K = scene(n=64, seed=4, channels=3)
    cuda = [p.float().cuda() for p in params]
    Tc, Kc = T.float().cuda(), K.float().cuda()
    a = render(*cuda, Tc, Kc, W, H, backend="gsplat")
    b = render(*cuda, Tc, Kc, W, H, backend="torch")
    assert a.backend == "gsplat"
    np.testing.assert_allclose(a.alpha.cpu(), b.alpha.cpu(), atol=2e-3)
    np.testing.assert_allclose(a.features.cpu(), b.features.cpu(), atol=2e-3)
