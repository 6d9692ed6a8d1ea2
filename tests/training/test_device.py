"""``training.device``: validated and resolved against the machine (a missing GPU is one line,
never a silent CPU run); the learner's code runs wherever its parameters are; a checkpoint of a
GPU run evaluates and resumes on a CPU. The CUDA tests run where CUDA is and skip otherwise."""

from __future__ import annotations

import pytest
import torch

from bdps_agents.cli import main as cli_main
from bdps_agents.config import ConfigError
from bdps_agents.device import DeviceError, randn_on, resolve_device, state_to_cpu
from bdps_agents.training import evaluate, load_checkpoint, train
from bdps_agents.training.checkpoint import write_checkpoint

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")


@pytest.mark.parametrize("value", ["cpu", "cuda", "cuda:0", "cuda:12", "auto"])
def test_device_values_are_accepted_by_the_config(small_lbf_config, value) -> None:
    assert small_lbf_config({"training.device": value}).training.device == value


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", ""])
def test_other_device_names_are_refused_naming_the_field(small_lbf_config, value) -> None:
    with pytest.raises(ConfigError, match="training.device"):
        small_lbf_config({"training.device": value})


def test_auto_and_cpu_resolve_to_what_the_machine_has() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    with pytest.raises(DeviceError, match="not a device"):
        resolve_device("gpu")


@needs_no_cuda
def test_asking_for_cuda_without_one_is_a_one_line_error(capsys, tmp_path) -> None:
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="has no CUDA device.*training.device=cpu or auto"):
            resolve_device(name)
    args = [
        "train",
        "--scenario",
        "lbf/8x8-2p-2f",
        "--steps",
        "100",
        "--logdir",
        str(tmp_path / "run"),
    ]
    assert cli_main([*args, "--set", "training.device=cuda", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "has no CUDA device" in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""  # refused before the run's first line
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


@needs_cuda
def test_a_cuda_index_beyond_the_machine_is_refused() -> None:
    n = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=f"has {n} CUDA device"):
        resolve_device(f"cuda:{n}")


def test_noise_from_a_cpu_generator_is_the_same_draw_on_any_device() -> None:
    like = torch.zeros(3, dtype=torch.float64)
    a = randn_on((4, 3), torch.Generator().manual_seed(5), like)
    b = torch.randn((4, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(a, b)
    if HAS_CUDA:
        on_gpu = randn_on((4, 3), torch.Generator().manual_seed(5), like.cuda())
        assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), b)


def test_state_to_cpu_keeps_values_and_the_state_dict_metadata() -> None:
    module = torch.nn.Linear(2, 3)
    state = module.state_dict()
    moved = state_to_cpu({"algorithm": state, "steps": [torch.ones(2), 3], "name": "x"})
    assert moved["algorithm"]._metadata == state._metadata
    assert all(torch.equal(moved["algorithm"][k], state[k]) for k in state)
    assert moved["steps"][1] == 3 and moved["name"] == "x"


def _tiny(small_lbf_config, **extra):
    return small_lbf_config({"training.total_steps": 600, "training.test_interval": 300, **extra})


def test_a_checkpoint_of_a_gpu_run_evaluates_and_resumes_on_a_cpu(small_lbf_config, tmp_path):
    cfg = _tiny(small_lbf_config)
    first = train(cfg, tmp_path / "run")
    _, data = load_checkpoint(first.checkpoint)
    # as a GPU run writes it: its config names the GPU (its tensors are on the CPU)
    data["config"]["training"]["device"] = "cuda"
    write_checkpoint(first.checkpoint, data)
    assert load_checkpoint(first.checkpoint)[0].training.device == "cuda"
    result = evaluate(first.checkpoint, episodes=2)  # evaluation takes no gradient step
    assert result["episodes"] == 2
    # resuming may change the device (and the budget)
    more = _tiny(small_lbf_config, **{"training.total_steps": 900})
    resumed = train(more, tmp_path / "run", resume=True)
    assert resumed.env_steps > first.env_steps
    if not HAS_CUDA:  # asked for the GPU again where there is none: refused, not run on CPU
        gpu = _tiny(small_lbf_config, **{"training.total_steps": 1200, "training.device": "cuda"})
        with pytest.raises(DeviceError, match="no CUDA device"):
            train(gpu, tmp_path / "run", resume=True)


@needs_cuda
@pytest.mark.parametrize("algo", ["qmix", "bdps"])
@pytest.mark.parametrize("overlap", [False, True])
def test_training_on_cuda_learns_writes_cpu_checkpoints_and_resumes(
    small_lbf_config, tmp_path, algo, overlap
):
    cfg = _tiny(
        small_lbf_config,
        **{"algorithm.name": algo, "training.device": "cuda", "training.overlap_learning": overlap},
    )
    result = train(cfg, tmp_path / "run")
    _, data = load_checkpoint(result.checkpoint)
    assert data["num_updates"] > 0
    tensors = [v for v in data["algorithm"].values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    adam = data["algorithm"]["_optimizers"][0]["state"]
    assert all(int(s["step"]) == data["num_updates"] for s in adam.values())
    assert evaluate(result.checkpoint, episodes=2)["episodes"] == 2
    on_cpu = _tiny(small_lbf_config, **{"algorithm.name": algo, "training.total_steps": 900})
    assert train(on_cpu, tmp_path / "run", resume=True).env_steps > result.env_steps
