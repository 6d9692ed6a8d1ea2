"""Gradient updates in a child process, overlapping with collection (``training.overlap_learning``).

On two cores, collecting and learning in turn leaves one core idle. With a
:class:`LearnerProcess` attached (``algorithm.remote_learner``), ``algorithm.update`` still
samples and assembles the episode batch in this process, but hands it to a child process that
owns a copy of the algorithm (networks, target networks, optimiser) and returns at once; the
next collect step runs while the child computes the gradient step. At the next ``update`` call
this process waits for that step (usually already done), copies the child's acting networks
(``policy.state_dict()``, through shared memory) into its own policy, and hands over the next
batch.

What changes against training in turn, and only this: the policy that collects steps
[i·N, (i+1)·N) has had i − 1 gradient steps instead of i (one update of lag, as in most
distributed learners); every update sees exactly the batch it would have seen. The pipeline has
fixed synchronisation points, so a run is still deterministic for a seed. Statistics returned
by ``update`` are those of the previous gradient step. :meth:`sync` waits for the step in
flight and, with ``full_state=True``, also copies the child's whole algorithm state (optimiser,
target networks, update count) back, which checkpoints and evaluations call first.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import traceback
from collections.abc import Callable
from typing import Any

import torch
from tianshou.algorithm.algorithm_base import TrainingStats, torch_train_mode
from tianshou.data import Batch

# the child imports this module by name (spawn): nothing here may import the training stack
# (bdps_agents.memory is a low-level module that imports none of it)
from bdps_agents.device import state_to_cpu
from bdps_agents.memory import reuse_freed_memory


class LearnerProcessError(RuntimeError):
    """The learner process died or could not start."""


def _policy_tensors(algorithm: Any) -> dict[str, torch.Tensor]:
    return algorithm.policy.state_dict(keep_vars=False)


def _learner_main(
    conn: multiprocessing.connection.Connection,
    factory: Callable[[], Any],
    state: dict[str, Any],
    shared: dict[str, torch.Tensor],
    torch_threads: int,
    reuse_memory: bool,
    seed: int,
    device: str = "cpu",
) -> None:
    """The child: build the algorithm (on ``device``), load the parent's state, then serve
    requests."""
    torch.set_num_threads(torch_threads)
    if reuse_memory:
        reuse_freed_memory()
    try:
        algorithm = _build_learner(factory, state, seed, torch.device(device))
        del state
        own = _policy_tensors(algorithm)
        conn.send(("ready", None))
    except BaseException as exc:  # report, do not hang the parent
        conn.send(("error", (exc, traceback.format_exc())))
        return
    with torch.no_grad():
        for name, tensor in own.items():
            shared[name].copy_(tensor)
    while True:
        try:
            kind, payload = conn.recv()
        except EOFError:  # the parent went away
            return
        try:
            if kind == "update":
                with torch_train_mode(algorithm):
                    stats = algorithm._update_with_batch(payload)
                for scheduler in algorithm.lr_schedulers:
                    scheduler.step()
                with torch.no_grad():
                    for name, tensor in own.items():
                        shared[name].copy_(tensor)
                conn.send(("stats", (stats, algorithm.num_updates)))
            elif kind == "state":  # on the CPU: CUDA tensors must not cross the pipe
                conn.send(("state", state_to_cpu(_full_state(algorithm))))
            elif kind == "close":
                return
            else:
                raise ValueError(f"unknown learner request {kind!r}")
        except BaseException as exc:
            conn.send(("error", (exc, traceback.format_exc())))


def _build_learner(
    factory: Callable[[], Any], state: dict[str, Any], seed: int, device: torch.device
) -> Any:
    """The learner's copy of the algorithm: built by ``factory``, moved to ``device``, with the
    acting algorithm's state (``load_state_dict`` copies onto the device; the optimiser moves
    its moments to its parameters' device)."""
    algorithm = factory().to(device)
    _load_full_state(algorithm, state)
    # BDPS: the VAE's sampling. A stream of its own, not a copy of the acting policy's
    # (which would correlate the VAE's noise with the role sampling of the acting one)
    for generator in algorithm.policy.torch_generators().values():
        generator.manual_seed(seed)
    return algorithm


def learner_seed(algorithm: Any) -> int:
    """Seed of the learner copy's own generators, drawn from the acting policy's
    (deterministic, and a resumed run draws it again from the restored generator)."""
    policy = algorithm.policy
    generators = policy.torch_generators()
    if generators:  # the first one (BDPS: its only one, the role sampling's)
        generator = next(iter(generators.values()))
        return int(torch.randint(0, 2**62, (1,), generator=generator))
    return int(policy.rng.integers(2**62))


def _full_state(algorithm: Any) -> dict[str, Any]:
    """The learner's state (its ``state_dict`` carries the update count)."""
    return {
        "algorithm": algorithm.state_dict(),
        "lr_schedulers": [s.state_dict() for s in algorithm.lr_schedulers],
    }


def _load_full_state(algorithm: Any, state: dict[str, Any]) -> None:
    """Adopt the other process's learner, keeping this process's policy generators: the
    parent's act, the child's only sample the VAE noise."""
    generators = algorithm.policy.generator_states()
    algorithm.load_state_dict(state["algorithm"])
    algorithm.policy.set_generator_states(generators)
    for scheduler, saved in zip(algorithm.lr_schedulers, state["lr_schedulers"], strict=True):
        scheduler.load_state_dict(saved)


class LearnerProcess:
    """Runs ``algorithm``'s gradient steps in a child process (see the module docstring).

    :param algorithm: the algorithm of this process (it keeps acting and holds the buffer's
        batches); attach the learner as ``algorithm.remote_learner = LearnerProcess(...)``.
    :param factory: a picklable callable building an identical algorithm in the child, e.g.
        ``functools.partial(build_algorithm, cfg, spec)``; the child then loads this
        algorithm's state, so it starts from the same weights.

    The child is a spawned interpreter: as with any ``multiprocessing`` spawn, a script that
    uses one must guard its entry point with ``if __name__ == "__main__":``.

    The child starts at the first :meth:`submit` (or :meth:`start`), from the algorithm's state
    at that moment (so a restored checkpoint carries over). Close it with :meth:`close`, or use
    the learner as a context manager.
    """

    def __init__(
        self,
        algorithm: Any,
        factory: Callable[[], Any],
        torch_threads: int = 1,
        reuse_freed_memory: bool = True,
        device: str = "cpu",
    ) -> None:
        self.algorithm = algorithm
        self.factory = factory
        self.torch_threads = torch_threads
        self.reuse_freed_memory = reuse_freed_memory
        self.device = device
        self._process: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._shared: dict[str, torch.Tensor] = {}
        self._in_flight = False
        self._unreported: TrainingStats | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LearnerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        if self.started:
            return
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")  # fork is unsafe with threads (JAX, Ray, BLAS)
        parent, child = ctx.Pipe()
        self._shared = {
            name: tensor.detach().clone().share_memory_()
            for name, tensor in _policy_tensors(self.algorithm).items()
        }
        self._process = ctx.Process(
            target=_learner_main,
            args=(
                child,
                self.factory,
                _full_state(self.algorithm),
                self._shared,
                self.torch_threads,
                self.reuse_freed_memory,
                learner_seed(self.algorithm),
                self.device,
            ),
            name="bdps-learner",
            daemon=True,
        )
        self._conn = parent
        try:
            self._process.start()
            child.close()
            self._receive("ready")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the child (waiting for nothing in flight); safe to call twice."""
        if not self.started:
            return
        conn = self._connection()
        with contextlib.suppress(BrokenPipeError, OSError):  # the child is gone already
            conn.send(("close", None))
        if self._process.pid is not None:  # it did start
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        conn.close()
        self._process = self._conn = None
        self._in_flight = False

    # -- the protocol ------------------------------------------------------------------------
    def _connection(self) -> multiprocessing.connection.Connection:
        if self._conn is None:
            raise LearnerProcessError("the learner process is not running")
        return self._conn

    def _died(self, exc: BaseException) -> LearnerProcessError:
        self._in_flight = False
        self._process.join(timeout=1)
        return LearnerProcessError(
            f"the learner process (training.overlap_learning) died (exit code "
            f"{self._process.exitcode}); its traceback, if any, is on stderr. Set "
            "training.overlap_learning=false to learn in this process."
        )

    def _send(self, kind: str, payload: Any) -> None:
        try:
            self._connection().send((kind, payload))
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._died(exc) from exc

    def _receive(self, expected: str) -> Any:
        try:
            kind, payload = self._connection().recv()
        except (EOFError, ConnectionResetError) as exc:
            raise self._died(exc) from exc
        if kind == "error":
            error, trace = payload
            self._in_flight = False
            raise error from LearnerProcessError(f"raised in the learner process:\n{trace}")
        if kind != expected:
            raise LearnerProcessError(f"learner process replied {kind!r}, expected {expected!r}")
        return payload

    def _wait(self) -> TrainingStats | None:
        """Finish the step in flight: adopt its acting networks and update count."""
        if not self._in_flight:
            return None
        stats, num_updates = self._receive("stats")
        self._in_flight = False
        with torch.no_grad():
            for name, tensor in _policy_tensors(self.algorithm).items():
                tensor.copy_(self._shared[name])
        self.algorithm.num_updates = num_updates
        return stats

    def submit(self, batch: Batch) -> TrainingStats:
        """Start a gradient step on ``batch`` in the child; returns the previous step's stats
        (empty stats for the first step). Used as ``update_with_batch_fn`` of
        ``Algorithm._update``."""
        if len(batch.get_keys()) == 0:  # no complete episode yet: nothing to learn from
            return self.algorithm._update_with_batch(batch)
        self.start()
        stats = self._wait() or self._unreported
        self._unreported = None
        self._send("update", batch)
        self._in_flight = True
        return stats if stats is not None else TrainingStats()

    def sync(self, full_state: bool = False) -> None:
        """Wait for the step in flight and adopt its networks; ``full_state``: also copy the
        child's optimiser, target networks and update count into this process's algorithm (for
        a checkpoint). Its stats are returned by the next :meth:`submit`."""
        if not self.started:
            return
        stats = self._wait()
        if stats is not None:
            self._unreported = stats
        if full_state:
            self._send("state", None)
            _load_full_state(self.algorithm, self._receive("state"))


class DeviceLearner:
    """Gradient steps on a device (a GPU) in this process, while ``algorithm`` acts on the CPU
    (``training.device`` without ``training.overlap_learning``; :mod:`bdps_agents.device`).

    The same protocol as :class:`LearnerProcess` (``submit``, ``sync``, ``close``), without its
    lag: ``submit`` runs the step on the device copy and then copies its acting networks into
    ``algorithm.policy``, so the next collect step acts with them, as inline training does.
    The device copy is built at the first ``submit`` from ``algorithm``'s state at that moment
    (a restored checkpoint carries over); ``sync(full_state=True)`` copies its optimiser,
    target networks and update count back for a checkpoint.
    """

    def __init__(self, algorithm: Any, factory: Callable[[], Any], device: str) -> None:
        self.algorithm = algorithm
        self.factory = factory
        self.device = torch.device(device)
        self._learner: Any = None

    @property
    def started(self) -> bool:
        return self._learner is not None

    def start(self) -> None:
        if not self.started:
            state = _full_state(self.algorithm)
            self._learner = _build_learner(
                self.factory, state, learner_seed(self.algorithm), self.device
            )

    def submit(self, batch: Batch) -> TrainingStats:
        if len(batch.get_keys()) == 0:  # no complete episode yet: nothing to learn from
            return self.algorithm._update_with_batch(batch)
        self.start()
        learner = self._learner
        with torch_train_mode(learner):
            stats = learner._update_with_batch(batch)
        for scheduler in learner.lr_schedulers:
            scheduler.step()
        with torch.no_grad():
            acting = _policy_tensors(self.algorithm)
            for name, tensor in _policy_tensors(learner).items():
                acting[name].copy_(tensor)
        self.algorithm.num_updates = learner.num_updates
        return stats

    def sync(self, full_state: bool = False) -> None:
        if full_state and self.started:
            _load_full_state(self.algorithm, state_to_cpu(_full_state(self._learner)))

    def close(self) -> None:
        self._learner = None
