"""The QPLEX mixer on random inputs whose answer the duplex dueling structure fixes: greedy actions
give the V part alone, the per-agent greedy joint action maximises Q_tot (IGM), Q_tot rises with
every agent's value, w and λ are positive; planted mixers with negative weights are caught."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from bdps_agents.networks import QMixer, QPLEXMixer
from bdps_agents.networks.mixer import mixer_action_inputs

N, S, A, B = 3, 5, 4, 64


def _mixer(**kwargs) -> QPLEXMixer:
    torch.manual_seed(0)
    return QPLEXMixer(N, S, A, embed_dim=8, hypernet_dim=16, heads=2, kernels=3, **kwargs)


def _inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, A, generator=g), torch.randn(B, S, generator=g)


def _q_tot(mixer, q: torch.Tensor, state: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
    """Q_tot of joint actions ``joint`` (B, n) for per-agent Q tables ``q`` (B, n, A)."""
    taken = q.gather(-1, joint.unsqueeze(-1)).squeeze(-1)
    return mixer(taken, state, actions=F.one_hot(joint, A).float(), max_q=q.amax(-1))


# planted: non-monotone mixers, each with one of the signs that QPLEX's IGM rests on flipped
class NegativeLambda(QPLEXMixer):
    def lambdas(self, state, actions):
        return -super().lambdas(state, actions)


class NegativeW(QPLEXMixer):
    def transformation(self, state):
        w, b = super().transformation(state)
        return -w, b


def igm_violations(mixer, q: torch.Tensor, state: torch.Tensor) -> int:
    """Samples where some joint action's Q_tot exceeds that of the per-agent greedy one."""
    greedy = _q_tot(mixer, q, state, q.argmax(-1))
    best_other = torch.full_like(greedy, -torch.inf)
    for joint in itertools.product(range(A), repeat=N):
        joint_t = torch.tensor(joint).expand(B, N)
        best_other = torch.maximum(best_other, _q_tot(mixer, q, state, joint_t))
    return int((best_other > greedy + 1e-5).sum())


def monotone_violations(mixer, q: torch.Tensor, state: torch.Tensor, delta: float = 0.5) -> int:
    """(sample, agent) pairs where raising agent i's value V_i by ``delta``, its advantage held
    (every Q_i(·) shifted alike), does not raise Q_tot."""
    joint = torch.randint(0, A, (B, N), generator=torch.Generator().manual_seed(3))
    before = _q_tot(mixer, q, state, joint)
    bad = 0
    for i in range(N):
        shifted = q.clone()
        shifted[:, i] += delta
        bad += int((_q_tot(mixer, shifted, state, joint) <= before).sum())
    return bad


def test_greedy_actions_give_the_value_part_alone_and_others_less():
    mixer = _mixer()
    q, state = _inputs()
    with torch.no_grad():
        w, b = mixer.transformation(state)
        v_part = (w * q.amax(-1) + b).sum(-1)
        greedy = _q_tot(mixer, q, state, q.argmax(-1))
        # the greedy action's runner-up for every agent: each A'_i < 0
        second = q.argsort(-1, descending=True)[..., 1]
        other = _q_tot(mixer, q, state, second)
    torch.testing.assert_close(greedy, v_part)
    assert (other < v_part - 1e-4).all()


def test_the_greedy_joint_action_is_the_best_one_and_the_check_catches_planted_mixers():
    q, state = _inputs()
    with torch.no_grad():
        assert igm_violations(_mixer(), q, state) == 0
        torch.manual_seed(0)
        assert igm_violations(NegativeLambda(N, S, A, 8, 16, 2, 3), q, state) > B // 2
        torch.manual_seed(0)
        assert igm_violations(NegativeW(N, S, A, 8, 16, 2, 3), q, state) > B // 2


def test_q_tot_rises_with_every_agents_value_and_the_check_catches_a_planted_mixer():
    q, state = _inputs()
    with torch.no_grad():
        assert monotone_violations(_mixer(), q, state) == 0
        torch.manual_seed(0)
        assert monotone_violations(NegativeW(N, S, A, 8, 16, 2, 3), q, state) == B * N


def test_w_and_lambda_are_positive_even_for_large_inputs():
    mixer = _mixer()
    q, state = _inputs()
    joint = F.one_hot(q.argmin(-1), A).float()
    with torch.no_grad():
        for scale in (1.0, 100.0):
            w, _ = mixer.transformation(scale * state)
            lam = mixer.lambdas(scale * state, joint)
            assert (w > 0).all() and (lam > 0).all()
            assert w.shape == lam.shape == (B, N)


def test_the_agents_q_values_get_their_gradient_through_the_transformation_alone():
    # the reference's choice: the advantages enter λ's term detached, so dQ_tot/dQ_i = w_i(s)
    mixer = _mixer()
    q, state = _inputs()
    joint = q.argmin(-1)
    taken = q.gather(-1, joint.unsqueeze(-1)).squeeze(-1).requires_grad_(True)
    q_tot = mixer(taken, state, actions=F.one_hot(joint, A).float(), max_q=q.amax(-1))
    (grad,) = torch.autograd.grad(q_tot.sum(), taken)
    w, _ = mixer.transformation(state)
    torch.testing.assert_close(grad, w.detach())


def test_it_refuses_to_mix_without_actions():
    q, state = _inputs()
    with pytest.raises(ValueError, match=r"QPLEXMixer needs actions= .* and max_q="):
        _mixer()(q[..., 0], state)


def test_the_learner_inputs_only_for_mixers_that_read_actions():
    q = torch.tensor([[[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]]])  # (1, n=2, A=3)
    mask = torch.tensor([[[True, False, True], [True, True, True]]])  # agent 0: 5 unavailable
    act = torch.tensor([[2, 0]])
    assert mixer_action_inputs(QMixer(2, 4), q, act, mask) == {}
    got = mixer_action_inputs(QPLEXMixer(2, 4, 3), q, act, mask)
    torch.testing.assert_close(got["max_q"], torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(got["actions"], F.one_hot(act, 3).float())
