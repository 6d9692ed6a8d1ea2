"""k-means (k-means++ seeding, several restarts) and the Davies–Bouldin index, in torch and
seeded by a ``torch.Generator``: the one-time clusterings of RODE (action embeddings -> role
action spaces) and SePS (agent-id embeddings -> parameter-sharing clusters)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Clusters:
    labels: torch.Tensor  # (N,) long, in 0..k-1
    centers: torch.Tensor  # (k, d)
    inertia: float  # Σ squared distance to the own center


def _plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next center drawn with probability ∝ squared distance."""
    N = len(points)
    first = int(torch.randint(N, (1,), generator=generator))
    centers = [points[first]]
    for _ in range(1, k):
        d2 = torch.cdist(points, torch.stack(centers)).pow(2).min(1).values
        if float(d2.sum()) <= 0.0:  # fewer distinct points than k: any point will do
            pick = int(torch.randint(N, (1,), generator=generator))
        else:
            pick = int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))
        centers.append(points[pick])
    return torch.stack(centers)


def kmeans(
    points: torch.Tensor,
    k: int,
    generator: torch.Generator,
    n_init: int = 10,
    max_iter: int = 100,
) -> Clusters:
    """The best (lowest inertia) of ``n_init`` Lloyd runs from k-means++ seeds. ``points``
    ``(N, d)``, ``1 <= k <= N``. A cluster left empty keeps its previous center."""
    points = points.detach().double()
    N = len(points)
    if not 1 <= k <= N:
        raise ValueError(f"k-means needs 1 <= k <= number of points ({N}), got k={k}")
    best: Clusters | None = None
    for _ in range(n_init):
        centers = _plus_plus(points, k, generator)
        labels = torch.cdist(points, centers).argmin(1)
        for _ in range(max_iter):
            onehot = torch.nn.functional.one_hot(labels, k).double()  # (N, k)
            sizes = onehot.sum(0)
            means = (onehot.T @ points) / sizes.clamp_min(1.0)[:, None]
            centers = torch.where(sizes[:, None] > 0, means, centers)
            new = torch.cdist(points, centers).argmin(1)
            if torch.equal(new, labels):
                break
            labels = new
        inertia = float((points - centers[labels]).pow(2).sum())
        if best is None or inertia < best.inertia - 1e-12:
            best = Clusters(labels, centers.float(), inertia)
    assert best is not None  # n_init >= 1
    return best


def davies_bouldin(points: torch.Tensor, labels: torch.Tensor) -> float:
    """Davies–Bouldin index (lower = more compact, better separated clusters): the mean over
    clusters i of max_{j≠i} (s_i + s_j) / d(c_i, c_j), s = mean distance to the own center.
    Needs ≥ 2 non-empty clusters; coinciding centers give +inf."""
    points = points.detach().double()
    ids = labels.unique()
    if len(ids) < 2:
        raise ValueError("the Davies-Bouldin index needs at least 2 non-empty clusters")
    centers = torch.stack([points[labels == i].mean(0) for i in ids])
    spread = torch.stack(
        [(points[labels == i] - c).norm(dim=1).mean() for i, c in zip(ids, centers, strict=True)]
    )
    dist = torch.cdist(centers, centers)
    inf = torch.full_like(dist, float("inf"))
    ratio = torch.where(dist > 0, (spread[:, None] + spread[None, :]) / dist, inf)
    ratio.fill_diagonal_(float("-inf"))
    return float(ratio.max(1).values.mean())
