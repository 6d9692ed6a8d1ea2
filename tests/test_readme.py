"""The README's "use it in your own Tianshou script" blocks (QMIX by hand, BDPS through the
builder on mpe2) run verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet(name: str = "readme-snippet") -> str:
    text = README.read_text()
    m = re.search(rf"<!-- {name}:start -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", text, re.S)
    assert m, f"README.md lost its marked Tianshou snippet {name}"
    return m.group(1)


def test_readme_quick_start_commands_are_there():
    text = README.read_text()
    head = text[: text.index("## Install for development")]
    assert "pip install tox" in head and "tox -e train-lbf" in head and "\ntox " in head


def test_readme_tianshou_snippet_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_snippet(), str(README), "exec"), {"__name__": "readme_snippet"})
    out = capsys.readouterr().out
    assert re.search(r"best greedy return -?\d+\.\d{3}", out)
    assert (tmp_path / "runs/readme-example/algorithm.pt").is_file()
    assert any((tmp_path / "runs/readme-example").glob("events.out.tfevents.*"))


def test_readme_bdps_snippet_runs_and_its_greedy_evaluation_is_deterministic(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_bdps_snippet"}
    exec(compile(readme_snippet("readme-bdps-snippet"), str(README), "exec"), namespace)
    out = capsys.readouterr().out
    m = re.search(r"greedy return (-?\d+\.\d{3}), again with the same seeds (-?\d+\.\d{3})", out)
    assert m and m.group(1) == m.group(2)
    assert (tmp_path / "runs/readme-bdps/learner.pt").is_file()
    assert any((tmp_path / "runs/readme-bdps").glob("events.out.tfevents.*"))
    learner, reloaded = namespace["learner"], namespace["reloaded"]
    # it trained BDPS with roles and groups replayed from whole 25-step episodes
    assert learner.algorithm.num_updates > 0
    assert {"role", "group"} <= set(learner.buffer._meta.policy.get_keys())
    starts = learner.buffer.sample_indices(0)
    assert len(starts) > 0 and (learner.buffer._episode_len[starts] == 25).all()
    # the reload is the same learner: update count, weights
    assert reloaded.algorithm.num_updates == learner.algorithm.num_updates
    saved, loaded = learner.algorithm.state_dict(), reloaded.algorithm.state_dict()
    assert saved.keys() == loaded.keys()
    for name, value in saved.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, loaded[name]), name
    # ... and its generators are the saved ones (before the evaluation above drew from them)
    state = namespace["state"]
    fresh = namespace["Learner"].from_state_dict(namespace["make_env"](), state)
    saved_generators = state["algorithm"]["_extra_state"]["policy_generators"]
    assert fresh.policy.generator_states()["numpy"] == saved_generators["numpy"]
    assert torch.equal(fresh.policy.generator_states()["torch"], saved_generators["torch"])
    namespace["train_envs"].close()
    namespace["test_envs"].close()
