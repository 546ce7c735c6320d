"""Where the fit loop is, as checkpoints save it: ``LoopState``, the point a resumed run continues from, the
accumulation that keeps the global batch on another number of workers, and Lightning's checkpoint layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightray.seed import restore_rng_states
from lightray.states import LoopPhase


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
