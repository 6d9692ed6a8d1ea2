"""k-means (k-means++ seeding, restarts) and the Davies–Bouldin index, in torch and seeded by a
``torch.Generator`` (no scikit-learn): the same generator state gives the same clusters. Used
once per training run on a handful of points: RODE's action embeddings (-> role action spaces)
and SePS's agent embeddings (-> parameter-sharing clusters), so the loops over restarts,
iterations and centres here are not hot paths.
"""

from __future__ import annotations

import torch

RESTARTS = 10  # k-means runs from fresh k-means++ seeds; the lowest inertia wins
MAX_ITERATIONS = 100


def canonical_labels(labels: torch.Tensor) -> torch.Tensor:
    """Renumber clusters by their first member, so that equal groupings get equal labels."""
    n = len(labels)
    first = torch.full((int(labels.max()) + 1,), n, dtype=torch.long)
    first = first.scatter_reduce(0, labels, torch.arange(n), reduce="amin")
    order = torch.argsort(first)  # old labels by first member; absent ones (first = n) last
    new = torch.empty_like(order)
    new[order] = torch.arange(len(order))
    return new[labels]


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: the first centre uniform, each next one drawn with probability ∝ the
    squared distance to the nearest centre so far (uniform if every point is on a centre)."""
    n = len(x)
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    d2 = (x - x[chosen[0]]).pow(2).sum(-1)
    for _ in range(k - 1):
        weights = d2 if float(d2.sum()) > 0 else torch.ones_like(d2)
        idx = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(idx)
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(-1))
    return x[chosen].clone()


def _lloyd(x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Lloyd iterations to convergence: (labels, inertia). An emptied cluster keeps its centre."""
    k = len(centres)
    labels = torch.cdist(x, centres).argmin(-1)
    for _ in range(MAX_ITERATIONS):
        onehot = torch.nn.functional.one_hot(labels, k).to(x.dtype)  # (N, k)
        counts = onehot.sum(0)
        sums = onehot.T @ x
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        new = torch.cdist(x, centres).argmin(-1)
        if torch.equal(new, labels):
            break
        labels = new
    inertia = float((x - centres[labels]).pow(2).sum())
    return labels, inertia


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Labels ``(N,)`` of the best of :data:`RESTARTS` k-means runs (lowest inertia; the first
    on ties) on ``x (N, D)``, canonical (:func:`canonical_labels`)."""
    if not 1 <= k <= len(x):
        raise ValueError(f"k-means needs 1 <= k <= N = {len(x)} points, got k = {k}")
    x = x.detach().double()
    best: tuple[torch.Tensor, float] | None = None
    for _ in range(RESTARTS):
        labels, inertia = _lloyd(x, _kmeans_pp(x, k, generator))
        if best is None or inertia < best[1]:
            best = (labels, inertia)
    assert best is not None  # RESTARTS >= 1
    return canonical_labels(best[0])


def davies_bouldin(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Davies–Bouldin index of a grouping: the mean over clusters i of
    max_{j≠i} (s_i + s_j) / d(c_i, c_j), s = mean distance of a cluster's points to its centroid
    c. Lower = tighter, better separated clusters; well separated ones score ≪ 1. Infinite when
    two clusters share a centroid; NaN for fewer than two clusters."""
    x = x.detach().double()
    k = int(labels.max()) + 1
    if k < 2:
        return float("nan")
    onehot = torch.nn.functional.one_hot(labels, k).to(x.dtype)
    counts = onehot.sum(0)
    centroids = (onehot.T @ x) / counts[:, None]
    spread = (onehot.T @ (x - centroids[labels]).norm(dim=-1)) / counts  # s_i
    dist = torch.cdist(centroids, centroids)
    ratio = (spread[:, None] + spread[None, :]) / dist
    ratio.fill_diagonal_(-float("inf"))
    return float(ratio.max(-1).values.mean())
