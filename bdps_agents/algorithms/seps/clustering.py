"""SePS's grouping of the agents' latent means (Christianos et al. 2021, Sec. 4.2): k-means with
k given, or the k whose clustering has the lowest Davies–Bouldin index
(:mod:`bdps_agents.algorithms.clustering`)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from bdps_agents.algorithms.clustering import davies_bouldin, kmeans


class Clustering(NamedTuple):
    """A grouping of N points: ``labels (N,)`` long in 0..k−1, numbered by first appearance
    (the cluster of point 0 is 0, the next new one 1, ...); ``score``: its Davies–Bouldin index
    (NaN where undefined: k = 1, or a k given without choosing)."""

    labels: torch.Tensor
    k: int
    score: float


def cluster_agents(
    mu: torch.Tensor, n_clusters: int | None, max_clusters: int, generator: torch.Generator
) -> Clustering:
    """SePS's grouping of N agents from their latent means ``mu (N, D)``: k-means with
    ``n_clusters`` if given; else k in 2..``max_clusters`` with the lowest Davies–Bouldin index
    (the smaller k on ties). With no k to choose from (``max_clusters`` < 2, e.g. N ≤ 2) every
    agent is in one cluster (k = 1, full sharing)."""
    n = len(mu)
    if n_clusters is not None:
        return _scored(mu, kmeans(mu, n_clusters, generator))
    if max_clusters < 2:
        return Clustering(torch.zeros(n, dtype=torch.long), 1, float("nan"))
    candidates = [_scored(mu, kmeans(mu, k, generator)) for k in range(2, max_clusters + 1)]
    # lowest index first, then fewest clusters; an undefined index (NaN) counts as the worst
    return min(candidates, key=lambda c: (math.inf if math.isnan(c.score) else c.score, c.k))


def _scored(mu: torch.Tensor, labels: torch.Tensor) -> Clustering:
    """``labels`` with its number of clusters (those used: k-means on coinciding points can
    leave one empty) and its Davies–Bouldin index (NaN for one cluster or one agent each)."""
    k = int(labels.max()) + 1
    score = davies_bouldin(mu, labels) if 1 < k < len(mu) else float("nan")
    return Clustering(labels, k, score)
