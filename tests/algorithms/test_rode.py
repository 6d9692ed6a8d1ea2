"""RODE's mechanisms, each with data whose answer is known: action embeddings group actions by
their effects (and carry nothing where actions have none), role action spaces hold the no-op and
always leave an available action, roles change only at decision steps, the k-means happens once."""

from __future__ import annotations

import pytest
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step, torch_train_mode

from bdps_agents.algorithms.clustering import kmeans
from bdps_agents.algorithms.rode.learner import role_action_spaces
from bdps_agents.algorithms.rode.policy import role_action_masks
from bdps_agents.exploration import warmup
from bdps_agents.networks.rode import ActionRepresentation
from bdps_agents.training import build_run

RODE = {"algorithm.name": "rode", "rode.n_roles": 3, "rode.role_interval": 3}


def test_role_action_spaces_hold_the_noop_and_give_attack_roles_the_moves():
    # SMAC layout: 0 no-op, 1 stop, 2-5 moves, 6-11 attacks
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    masks = role_action_spaces(labels, 4, noop_action=0, move_actions=[1, 2, 3, 4, 5])
    assert masks[:, 0].all()  # the no-op everywhere
    assert masks[1, :6].all() and masks[1, 6:10].all() and not masks[1, 10:].any()
    assert masks[2].tolist() == [True] + [False] * 9 + [True, True]  # 2 attacks: no moves
    assert masks[0].tolist() == [True] * 6 + [False] * 6
    assert masks[3].all()  # an empty cluster allows every action
    # LBF (0 no-op, 1-4 moves, 5 load) with threshold 1: the loading role can move too
    lbf = role_action_spaces(torch.tensor([1, 0, 0, 0, 0, 1]), 2, 0, [1, 2, 3, 4], 1)
    assert lbf.tolist() == [[True] * 5 + [False], [True] * 6]


def test_role_action_masks_always_leave_an_available_action():
    gen = torch.Generator().manual_seed(0)
    k, A, n = 4, 9, 5
    role_masks = torch.rand(k, A, generator=gen) < 0.3
    role_masks[:, 0] = True  # the no-op
    role = torch.randint(k, (200, n), generator=gen)
    available = torch.rand(200, n, A, generator=gen) < 0.4
    available[:50, :, 0] = False  # live SMAC units: no no-op
    available[..., 1] |= ~available.any(-1)  # every agent has some action
    mask = role_action_masks(role_masks, role, available)
    assert mask.any(-1).all()
    assert not (mask & ~available).any()
    both = role_masks[role] & available
    assert torch.equal(mask[both.any(-1)], both[both.any(-1)])
    assert (~both.any(-1)).any(), "the fallback case was not exercised"


def _trained_embeddings(effects: torch.Tensor, seed: int, steps: int = 600) -> torch.Tensor:
    """Train the forward model on transitions next obs = obs + effects[a] (+ small noise)."""
    torch.manual_seed(seed)
    n, d, A = 2, 4, effects.shape[0]
    model = ActionRepresentation(n, d, A, embed_dim=8, hidden_dim=32)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        obs = torch.randn(64, n, d)
        act = torch.randint(A, (64, n))
        nxt = obs + effects[act] + 0.01 * torch.randn(64, n, d)
        loss, _, _ = model.loss(obs, act, nxt, torch.zeros(64), torch.ones(64, n))
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        return model.embeddings()


def _within_over_between(z: torch.Tensor, pairs: list[tuple[int, int]]) -> float:
    dist = torch.cdist(z, z)
    same = torch.zeros_like(dist, dtype=torch.bool)
    for a, b in pairs:
        same[a, b] = same[b, a] = True
    other = ~same & ~torch.eye(len(z), dtype=torch.bool)
    return float(dist[same].mean() / dist[other].mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_action_embeddings_group_actions_by_their_effect(seed):
    pairs = [(0, 1), (2, 3), (4, 5)]
    planted = torch.zeros(6, 4)
    planted[2:4, 0], planted[4:6, 0], planted[4:6, 1] = 1.0, -1.0, 2.0
    z = _trained_embeddings(planted, seed)
    labels = kmeans(z, 3, torch.Generator().manual_seed(seed))
    assert all(labels[a] == labels[b] for a, b in pairs)
    assert len(set(labels.tolist())) == 3
    assert _within_over_between(z, pairs) < 0.2
    # no structure: every action has the same effect, so pairs are no closer than any two
    z_flat = _trained_embeddings(torch.zeros(6, 4), seed)
    assert _within_over_between(z_flat, pairs) > 0.5


def _stored_episodes(run, n: int = 8):
    batch, indices = run.buffer.sample(n)
    return run.algorithm._preprocess_batch(batch, run.buffer, indices)


def test_roles_change_only_at_decision_steps_and_actions_stay_in_the_role(small_lbf_config):
    run = build_run(small_lbf_config(RODE))
    try:
        alg = run.algorithm
        alg.cluster_role_actions()
        warmup(run.train_collector, n_episode=12)  # ε = 1: random roles and actions
        batch = _stored_episodes(run)
        ep = alg.episode_tensors(batch)
        role, valid = ep["role"][:, :-1], ep["valid"]
        steps = torch.arange(role.shape[1])
        kept = valid[:, 1:, None] & (steps[1:] % 3 != 0)[None, :, None]
        decided = valid[:, 1:, None] & (steps[1:] % 3 == 0)[None, :, None]
        changed = role[:, 1:] != role[:, :-1]
        kept, decided = kept.expand_as(changed), decided.expand_as(changed)
        assert not changed[kept].any()
        assert changed[decided].any(), "roles never changed: the test could not fail"
        # every action taken lies in the role's actions ∩ the available ones
        available = torch.as_tensor(batch.obs.mask).bool()[:, :-1]
        allowed = role_action_masks(alg.policy.role_masks, role, available)
        taken = allowed.gather(-1, ep["act"].unsqueeze(-1)).squeeze(-1)
        assert taken[valid[..., None].expand_as(taken)].all()
        assert alg.policy.role_masks[:, 0].all()  # the no-op is in every role
    finally:
        run.close()


def test_the_role_action_spaces_are_fixed_once_after_the_start_update(small_lbf_config):
    run = build_run(small_lbf_config({**RODE, "training.steps_per_update": 10}))
    try:
        alg, policy = run.algorithm, run.policy
        alg.start_update = 2
        warmup(run.train_collector, n_episode=8)

        def update():
            with torch_train_mode(alg):
                return alg._update_with_batch(_stored_episodes(run, 4))

        first = update()
        assert not bool(policy.clustered) and first.repr_loss is not None
        assert policy.role_masks.all()  # every role allows every action before
        update()
        assert bool(policy.clustered)
        masks, z = policy.role_masks.clone(), policy.action_embed.clone()
        m = masks.float()
        assert torch.allclose(policy.role_embed, (m @ z) / m.sum(-1, keepdim=True))
        for _ in range(3):
            stats = update()
            assert stats.repr_loss is None  # the representation no longer trains
        assert torch.equal(policy.role_masks, masks) and torch.equal(policy.action_embed, z)
        assert stats.rode_clustered == 1.0
        for i, mask in enumerate(masks):  # the logged bitmask names the role's actions
            bits = int(stats.roles[f"role_{i}_mask"])
            assert [a for a in range(mask.numel()) if bits >> a & 1] == torch.nonzero(
                mask
            ).flatten().tolist()
        # the role ε restarts at 1 after the k-means and anneals with acted steps
        with policy_within_training_step(policy):
            policy.set_eps_training(0.1)
            assert policy.role_eps() == 1.0
            policy.role_steps = policy.role_eps_schedule.steps // 2
            assert 0.1 < policy.role_eps() < 1.0
        assert policy.role_eps() == policy.eps_inference  # test episodes: the test ε
    finally:
        run.close()
