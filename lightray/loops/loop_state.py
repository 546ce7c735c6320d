"""Where the fit loop is, as checkpoints save it: ``LoopState``, the point a resumed run continues from and how
its epoch's data order is drawn again, the accumulation that keeps the global batch on another number of
workers, and Lightning's checkpoint layout."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from lightray import data
from lightray.errors import PossibleUserWarning
from lightray.seed import restore_rng_states
from lightray.states import LoopPhase
from lightray.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from lightray.loops.fit_loop import FitLoop


@dataclass
class LoopState:
    """Where training is; saved in checkpoints so a run resumes at the next batch."""

    epoch: int = 0  # epochs completed (== the current epoch's index while it runs)
    batch_idx: int = 0  # batches completed in the current epoch
    global_step: int = 0  # optimizer steps taken
    batches_that_stepped: int = 0  # training batches that ended with an optimizer step (the loggers' step)
    total_batch_idx: int = 0  # training batches seen over all epochs
    phase: LoopPhase = LoopPhase.BEFORE_BATCH


@dataclass
class ResumePoint:
    """A checkpoint's position inside an epoch, and the RNG states to continue with."""

    phase: LoopPhase
    epoch_start_rng: (
        dict[str, Any] | None
    )  # None: unknown (a Lightning checkpoint), the epoch's order cannot be replayed
    rng_states: dict[str, Any] | None

    def restore_rng(self) -> None:
        if self.rng_states is not None:
            restore_rng_states(self.rng_states)


def scaled_accumulation(saved_world: int, saved_accumulate: int, world: int, accumulate: int) -> tuple[int, str]:
    """Elastic training on ``world`` workers instead of ``saved_world``: the accumulation that keeps the global
    batch size (``accumulate`` unchanged when none does), and what happened, for a warning."""
    total = saved_world * saved_accumulate
    if total % world == 0:
        kept = total // world
        return kept, f"accumulate_grad_batches {saved_accumulate} -> {kept} keeps the global batch size"
    return accumulate, (
        f"the global batch size changes by {world * accumulate}/{total}: {total} is not a multiple of {world} workers"
    )


def from_lightning_fit_loop(state: dict[str, Any]) -> dict[str, Any]:
    """The position a Lightning checkpoint's ``loops.fit_loop`` describes, in lightray's terms: after an epoch's
    end (where ModelCheckpoint saves by default) the next epoch; inside an epoch the next batch, as Lightning
    resumes them."""
    epochs = state["epoch_progress"]["current"]
    batches = state["epoch_loop.batch_progress"]
    stepped = state.get("epoch_loop.state_dict", {}).get("_batches_that_stepped", 0)
    optimizer = state.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {})
    manual = state.get("epoch_loop.manual_optimization.optim_step_progress", {})
    steps = optimizer.get("step", manual).get("total", {}).get("completed", 0)
    position = {"global_step": steps, "total_batch_idx": batches["total"]["completed"], "epoch_start_rng": None}
    if epochs["processed"] > epochs["completed"] or batches["current"]["ready"] == 0:  # at or between epochs' ends
        epoch = epochs["completed"] + (1 if epochs["processed"] > epochs["completed"] else 0)
        return {**position, "epoch": epoch, "batch_idx": 0, "batches_that_stepped": stepped, "phase": "before_batch"}
    return {
        **position,
        "epoch": epochs["completed"],
        "batch_idx": batches["current"]["ready"],
        "total_batch_idx": batches["total"]["ready"],
        "batches_that_stepped": stepped + 1,  # saved in on_train_batch_end, before its increment
        "phase": "before_batch",
    }


def epoch_iterator(loop: FitLoop, loader: Iterable, resume: ResumePoint | None) -> Iterator:
    """The fit loop's ``iter(loader)`` for an epoch; on resume, the interrupted epoch's order from its next batch on."""
    generators = data.generators(loader)
    early, loop.early_iterator = loop.early_iterator, None
    if resume is None:
        if early is not None and loop.state.epoch == 0:
            # the first epoch reads the iterator made when its loader was set up; its sampler draws from the
            # state of now (hooks may have drawn since), which a resumed epoch must draw from too
            loop.epoch_start_rng["first_batch"] = torch.get_rng_state()
            return early
        loop.epoch_start_rng = rng_of(generators)
        return iter(loader)
    if resume.epoch_start_rng is None:
        rank_zero_warn(
            "Resuming from a checkpoint that ended before the epoch ended, without the epoch's data order (a "
            "Lightning checkpoint): the rest of the epoch reads its data from the first batch again, as Lightning "
            "does.",
            category=PossibleUserWarning,
        )
        loop.epoch_start_rng = rng_of(generators)
        return iter(loader)
    # Draw the interrupted epoch's order again from the RNG state it started with ...
    torch.set_rng_state(resume.epoch_start_rng["torch"])
    for generator, rng in zip(generators, resume.epoch_start_rng["generators"]):
        generator.set_state(rng)
    loop.epoch_start_rng = resume.epoch_start_rng
    skip = loop.state.batch_idx
    sampler = getattr(loader, "batch_sampler", None)
    first_batch_rng = resume.epoch_start_rng.get("first_batch")
    if isinstance(sampler, data.ResumableBatchSampler):
        sampler.skip_next(skip)  # skip consumed batches without loading them
        iterator = iter(loader)
        if first_batch_rng is not None:
            torch.set_rng_state(first_batch_rng)
        sampler.advance()
    else:
        iterator = iter(loader)
        if first_batch_rng is not None:
            torch.set_rng_state(first_batch_rng)
        for _ in range(skip):  # a loader we cannot rebuild: read and drop what the interrupted run consumed
            next(iterator, None)
    # ... then continue with the RNG state of the moment the checkpoint was taken
    resume.restore_rng()
    return iterator


def rng_of(generators: list[torch.Generator]) -> dict[str, Any]:
    """The RNG state an epoch's data order is drawn from (saved so a resumed epoch draws the same order)."""
    return {"torch": torch.get_rng_state(), "generators": [g.get_state() for g in generators]}
