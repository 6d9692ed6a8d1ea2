"""k-means and the Davies–Bouldin index on points whose clusters are known (SePS's use of them,
choosing k for a team, is tested in test_seps.py)."""

from __future__ import annotations

import math

import pytest
import torch

from bdps_agents.algorithms.clustering import davies_bouldin, kmeans


def _blobs(seed: int, centers: torch.Tensor, per: int = 20, spread: float = 0.1):
    gen = torch.Generator().manual_seed(seed)
    points = centers.repeat_interleave(per, 0) + spread * torch.randn(
        len(centers) * per, centers.shape[1], generator=gen
    )
    return points, torch.arange(len(centers)).repeat_interleave(per)


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a[:, None] == a[None]) == (b[:, None] == b[None])).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_finds_planted_blobs(seed):
    centers = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [3.0, 3.0]])
    points, truth = _blobs(seed, centers)
    found = kmeans(points, 4, torch.Generator().manual_seed(seed))
    assert _same_partition(found, truth)
    assert found[0] == 0  # numbered by first member


def test_davies_bouldin_prefers_the_planted_number_of_clusters_and_not_noise():
    centers = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    points, _ = _blobs(0, centers)
    gen = torch.Generator().manual_seed(0)
    scores = {k: davies_bouldin(points, kmeans(points, k, gen)) for k in range(2, 7)}
    assert min(scores, key=scores.__getitem__) == 3
    assert scores[3] < 0.2
    # uniform noise has no clusters: every k scores far worse than the planted blobs
    noise = torch.rand(60, 2, generator=gen) * 4
    noise_scores = [davies_bouldin(noise, kmeans(noise, k, gen)) for k in range(2, 7)]
    assert min(noise_scores) > 3 * scores[3]


def test_bad_input_is_named_and_one_cluster_has_no_index():
    with pytest.raises(ValueError, match="1 <= k <= N = 3 points"):
        kmeans(torch.zeros(3, 2), 4, torch.Generator())
    assert math.isnan(davies_bouldin(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)))
