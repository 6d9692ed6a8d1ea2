"""The learner's pieces on tiny hand-checked inputs."""

from __future__ import annotations

import platform
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.data import Batch
from torch import nn

from bdps_agents.algorithms.qmix.algorithm import QMIX
from bdps_agents.algorithms.td_targets import td_lambda_targets
from bdps_agents.networks import QMixer, RecurrentAgent, StackedGRUCell, StackedLinear, VDNMixer
from bdps_agents.networks.stacked import RowGroups
from bdps_agents.policy import AgentInputs, MultiAgentQPolicy


def _t(x):
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize(
    ("lam", "expected"),
    [
        (0.0, [6.0, 10.0, 2.0]),  # r + γ(1-d)Q': 1+.5*10, 0+.5*20, 2 (terminal)
        (0.5, [4.875, 5.5, 2.0]),  # G1 = .5*(.5*20 + .5*2), G0 = 1 + .5*(.5*10 + .5*5.5)
    ],
)
def test_td_lambda_targets_terminated_episode(lam, expected):
    y = td_lambda_targets(
        rew=_t([[1, 0, 2]]),
        terminated=torch.tensor([[False, False, True]]),
        valid=torch.tensor([[True, True, True]]),
        q_next=_t([[10, 20, 30]]),
        gamma=0.5,
        td_lambda=lam,
    )
    torch.testing.assert_close(y, _t([expected]))


def test_td_lambda_targets_truncated_padded_episode_bootstraps():
    # length-2 episode cut by the time limit in a batch padded to T=3
    y = td_lambda_targets(
        rew=_t([[1, 1, 0]]),
        terminated=torch.tensor([[False, False, False]]),
        valid=torch.tensor([[True, True, False]]),
        q_next=_t([[4, 8, 99]]),
        gamma=0.5,
        td_lambda=0.5,
    )
    # G1 = 1 + .5*8 (bootstrap at the last valid step), G0 = 1 + .5*(.5*4 + .5*5), padding 0
    torch.testing.assert_close(y, _t([[3.25, 5.0, 0.0]]))


class FixedQAgent(nn.Module):
    """Test double for the agent network: returns preset Q-values whatever the input."""

    def __init__(self, q: torch.Tensor, input_dim: int = 1):
        super().__init__()
        self.hidden_dim, self.input_dim, self.groups = 4, input_dim, 1
        self.n_actions = q.shape[-1]
        self.q = nn.Parameter(q.clone())

    def forward(self, x):
        return self.q.expand(x.shape[0], *self.q.shape)


def _tiny_qmix(double_q: bool) -> tuple[QMIX, Batch]:
    n, A, d = 2, 3, 1
    # online Q for steps t0, t1, t2 (t2 = the observation after the last action)
    q = _t([[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [1, 1, 1]], [[0, 5, 1], [2, 0, 3]]])
    inputs = AgentInputs(n, d, A, last_action=False, agent_id=False)
    policy = MultiAgentQPolicy(
        agent=FixedQAgent(q),  # type: ignore[arg-type]
        inputs=inputs,
        action_space=gym.spaces.MultiDiscrete([A] * n),
    )
    alg = QMIX(policy=policy, mixer=VDNMixer(), gamma=0.5, td_lambda=0.0, double_q=double_q)
    # target net disagrees with the online one: 10 * Q with actions reversed
    with torch.no_grad():
        alg.target_agent.module.q.copy_(10 * q.flip(-1))
    mask = np.ones((1, 3, n, A), np.int8)
    mask[0, 1, 0, 2] = 0  # at t1 agent 0 cannot take action 2
    batch = Batch(
        obs=Batch(
            obs=np.zeros((1, 3, n, d), np.float32),
            state=np.zeros((1, 3, 2), np.float32),
            mask=mask,
        ),
        act=np.array([[[0, 1], [1, 0]]]),
        rew=np.array([[1.0, 2.0]]),
        terminated=np.array([[False, True]]),
        valid=np.array([[True, True]]),
    )
    return alg, batch


@pytest.mark.parametrize(("double_q", "y0"), [(True, 46.0), (False, 51.0)])
def test_qmix_td_loss_hand_checked(double_q, y0):
    """Q_tot(t0) = Q0[a=0] + Q1[a=1] = 1 + 5 = 6; Q_tot(t1) = 8 + 1 = 9.
    Next-step action at t1 among available {0, 1} for agent 0:
      double-Q picks by online Q [7, 8] -> 1, valued by target [90, 80] -> 80; agent 1 -> 10
      plain max over target [90, 80] -> 90; agent 1 -> 10
    y0 = 1 + 0.5 * (80 + 10) = 46 (double) or 1 + 0.5 * (90 + 10) = 51; y1 = 2 (terminal)."""
    alg, batch = _tiny_qmix(double_q)
    loss, stats = alg.td_loss(alg.episode_tensors(batch))
    expected = ((6 - y0) ** 2 + (9 - 2) ** 2) / 2
    assert loss.item() == pytest.approx(expected)
    assert float(stats["target_sum"] / stats["valid_steps"]) == pytest.approx((y0 + 2) / 2)


def test_stacked_linear_modes_match_separate_layers():
    torch.manual_seed(0)
    layer = StackedLinear(3, 5, 4)
    x = torch.randn(7, 3, 5)
    separate = [x[:, g] @ layer.weight[g] + layer.bias[g] for g in range(3)]
    # slot g uses network g (no sharing)
    torch.testing.assert_close(layer(x), torch.stack(separate, 1))
    # explicit index: row i of slot j uses network index[i, j]
    index = torch.randint(0, 3, (7, 3))
    out = layer(x, index)
    for i in range(7):
        for j in range(3):
            g = index[i, j]
            torch.testing.assert_close(out[i, j], x[i, j] @ layer.weight[g] + layer.bias[g])


@pytest.mark.parametrize("how", ["long", "onehot", "rows"])
def test_gradients_reach_only_the_assigned_networks(how):
    layer = StackedLinear(3, 5, 4)
    x = torch.randn(6, 2, 5)
    index = torch.tensor([[0, 2]] * 6)  # nobody uses network 1
    chosen = {"long": index, "onehot": layer.onehot(index), "rows": RowGroups.of(index, 3)}[how]
    layer(x, chosen).sum().backward()
    assert layer.weight.grad[1].abs().sum() == 0 and layer.bias.grad[1].abs().sum() == 0
    assert layer.weight.grad[0].abs().sum() > 0 and layer.weight.grad[2].abs().sum() > 0


@pytest.mark.parametrize(("in_dim", "out_dim"), [(5, 4), (4, 7)])  # bias broadcast / ones column
@pytest.mark.parametrize("split", ["balanced", "skewed", "one group"])
def test_sorted_rows_match_the_one_hot_layer(split, in_dim, out_dim):
    """RowGroups (rows sorted and padded per group, one batched product) gives the outputs and
    gradients of the one-hot form, whatever the group sizes."""
    torch.manual_seed(4)
    layer = StackedLinear(3, in_dim, out_dim).double()
    x = torch.randn(9, 2, 4, in_dim, dtype=torch.float64, requires_grad=True)
    index = {
        "balanced": torch.randint(0, 3, (9, 2, 4)),
        "skewed": (torch.rand(9, 2, 4) < 0.1).long() * 2,  # mostly 0, a few 2, no 1
        "one group": torch.ones(9, 2, 4, dtype=torch.long),
    }[split]
    weights = torch.randn(9, 2, 4, out_dim, dtype=torch.float64)
    params = [x, layer.weight, layer.bias]
    want = layer(x, layer.onehot(index, x.dtype))
    want_grads = torch.autograd.grad((want * weights).sum(), params)
    got = layer(x, RowGroups.of(index, 3))
    got_grads = torch.autograd.grad((got * weights).sum(), params)
    torch.testing.assert_close(got, want)
    for name, g, w in zip(["x", "weight", "bias"], got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, msg=f"gradient of {name} ({split})")


@pytest.mark.parametrize("groups", [1, 3])
def test_agent_step_and_unroll_agree(groups):
    torch.manual_seed(0)
    agent = RecurrentAgent(input_dim=6, n_actions=4, hidden_dim=8, groups=groups)
    x = torch.randn(2, 5, 3, 6)
    q_seq = agent(x)
    h = agent.initial_state(2, 3)
    for t in range(5):
        q_t, h = agent.step(x[:, t], h)
        torch.testing.assert_close(q_t, q_seq[:, t])


@pytest.mark.parametrize("groups", [1, 3])
def test_agent_unroll_with_changing_index_matches_stepping(groups):
    torch.manual_seed(1)
    agent = RecurrentAgent(input_dim=6, n_actions=4, hidden_dim=8, groups=groups)
    x = torch.randn(2, 5, 3, 6)
    index = torch.randint(0, groups, (2, 5, 3))
    q_seq, hidden = agent(x, index=index, return_hidden=True)
    h = agent.initial_state(2, 3)
    for t in range(5):
        q_t, h = agent.step(x[:, t], h, index[:, t])
        torch.testing.assert_close(q_t, q_seq[:, t])
        torch.testing.assert_close(h, hidden[:, t])


@pytest.mark.parametrize("mode", ["shared", "slot", "index", "index+rows"])
@pytest.mark.parametrize("T", [1, 6])
def test_fused_gru_unroll_matches_autograd_of_the_step_loop(mode, T):
    """``StackedGRUCell.unroll`` (hand-written backward; with one shared cell the input
    projection inside the loop) against autograd through T calls of the cell: hidden states and
    the gradients of inputs, h0 and both layers' weights and biases."""
    torch.manual_seed(2)
    G, B, n, D, H = 3, 2, 3, 4, 5
    groups = 1 if mode == "shared" else G
    cell = StackedGRUCell(groups, D, H).double()
    x = torch.randn(T, B, n, D, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, n, H, dtype=torch.float64, requires_grad=True)
    index = onehot = rows = None
    if mode.startswith("index"):
        index = torch.randint(0, G, (T, B, n))
        onehot = nn.functional.one_hot(index, G).double()
        rows = RowGroups.of(index, G) if mode == "index+rows" else None
    weights = torch.randn(T, B, n, H, dtype=torch.float64)  # a loss that weighs every step
    params = [x, h0, cell.ih.weight, cell.ih.bias, cell.hh.weight, cell.hh.bias]

    h, steps = h0, []
    for t in range(T):
        h = cell(x[t], h, None if onehot is None else onehot[t])
        steps.append(h)
    expected = torch.stack(steps)
    expected_grads = torch.autograd.grad((expected * weights).sum(), params)

    fused = cell.unroll(x, h0, index, rows)
    grads = torch.autograd.grad((fused * weights).sum(), params)
    torch.testing.assert_close(fused, expected)
    names = ["inputs", "h0", "input weight", "input bias", "recurrent weight", "recurrent bias"]
    for name, got, want in zip(names, grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, msg=f"gradient of {name} ({mode}, T={T})")


@pytest.mark.parametrize("groups", [1, 2])
def test_fused_gru_unroll_passes_gradcheck(groups):
    torch.manual_seed(3)
    cell = StackedGRUCell(groups, 2, 3).double()
    index = torch.randint(0, groups, (4, 2, 2)) if groups > 1 else None
    x = torch.randn(4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    # the weights are the cell's own parameters: gradcheck perturbs them in place
    assert torch.autograd.gradcheck(
        lambda x_, h, *_: cell.unroll(x_, h, index),
        (x, h0, cell.ih.weight, cell.ih.bias, cell.hh.weight, cell.hh.bias),
    )


def test_qmixer_is_monotonic_in_agent_qs():
    torch.manual_seed(0)
    mixer = QMixer(n_agents=3, state_dim=4)
    qs = torch.randn(16, 3, requires_grad=True)
    mixer(qs, torch.randn(16, 4)).sum().backward()
    assert (qs.grad >= 0).all()


def test_policy_masks_actions_and_resets_hidden_state():
    n, A, d = 2, 4, 3
    inputs = AgentInputs(n, d, A, last_action=True, agent_id=True)
    policy = MultiAgentQPolicy(
        agent=RecurrentAgent(inputs.dim, A, 8),
        inputs=inputs,
        action_space=gym.spaces.MultiDiscrete([A] * n),
        eps_inference=1.0,  # fully random: must still respect masks
        seed=0,
    )
    mask = np.zeros((64, n, A), np.int8)
    mask[:, 0, 2] = 1
    mask[:, 1, [1, 3]] = 1
    obs = Batch(obs=np.random.rand(64, n, d).astype(np.float32), mask=mask, state=np.zeros((64, 5)))
    out = policy(Batch(obs=obs, info=Batch()))
    assert np.all(out.act[:, 0] == 2) and set(np.unique(out.act[:, 1])) == {1, 3}
    # the state is numpy (so Tianshou's Collector zeroes it at episode ends) and holds the action
    assert isinstance(out.state.h, np.ndarray)
    np.testing.assert_array_equal(out.state.last_act.argmax(-1), out.act)
    out.state.empty_([0])  # what the Collector does for a finished env
    assert not out.state.h[0].any() and not out.state.last_act[0].any()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)
def test_reuse_freed_memory_applies_on_glibc():
    from bdps_agents.memory import reuse_freed_memory

    assert reuse_freed_memory() is True
