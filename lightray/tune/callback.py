"""TuneReportCallback: logged metrics (reduced over all ranks) and a checkpoint, to Ray Tune.

The callback runs in the training process: in the Tune trial itself for a trial that trains in-process
(``num_workers=0``), on every Ray Train worker for a trial that drives a Ray Train run. Either way the
report reaches Tune from the trial, once per event (``on=``): in-process it calls ``ray.tune.report``
directly; on workers rank 0 hands it to the trial through lightray's driver channel. Ray Train's own
reports (lightray's checkpoints) are never forwarded, so a trial's Tune iterations are exactly its
validation epochs (or whichever event ``on`` names).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

import torch

from lightray.callbacks.callback import Callback
from lightray.checkpoint import CHECKPOINT_FILE
from lightray.errors import MisconfigurationError
from lightray.tune.trial import current as current_trial

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer

EVENTS = ("validation_end", "validation_epoch_end", "train_epoch_end", "train_end")


class TuneReportCallback(Callback):
    """Report logged metrics, reduced over all ranks, and a checkpoint to Ray Tune.

    Create it inside the function that a Ray Tune trial runs: any function trainable given to
    ``ray.tune.Tuner`` (directly, or through ``tune.with_resources`` / ``tune.with_parameters``), or to
    ``lightray.tune.tuner`` / ``lightray tune``; its Trainer may train in the trial or on Ray Train workers::

        def train_fn(config):
            trainer = pl.Trainer(max_epochs=10, callbacks=[TuneReportCallback({"loss": "val_loss"})])
            trainer.fit(LitModel(config["lr"]), datamodule=...)

        ray.tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=ASHAScheduler())).fit()

    ``fit`` outside any Tune trial raises ``MisconfigurationError``.

    Args:
        metrics: which of the logged metrics (``trainer.callback_metrics``) to report: None for all, a name,
            a list of names, or a dict ``{name in Tune: logged name}``. ``epoch`` and ``step`` are added.
        on: when to report: ``"validation_end"`` (one Tune iteration per validation run, the default),
            ``"validation_epoch_end"``, ``"train_epoch_end"`` (for runs without validation) or ``"train_end"``.
        save_checkpoints: attach a checkpoint to every report (weights, optimizer, loop position), so Tune can
            restore the trial and PBT can exploit it.

    When the trial restarts from a Tune checkpoint (PBT exploit, ``Tuner.restore``, a failed trial retried),
    ``fit`` resumes from it unless a ``ckpt_path`` is given. Optimizer hyperparameters that this run
    configured differently from the run that wrote the checkpoint (a PBT mutation, e.g. ``lr``) keep their
    new values; everything else in the optimizer state (moments, step counts) is restored.
    """

    def __init__(
        self,
        metrics: str | list[str] | dict[str, str] | None = None,
        on: str = "validation_end",
        save_checkpoints: bool = True,
    ) -> None:
        if on not in EVENTS:
            raise MisconfigurationError(f"TuneReportCallback(on={on!r}): use one of {list(EVENTS)}.")
        if isinstance(metrics, str):
            metrics = [metrics]
        self.metrics: dict[str, str] | None = (
            dict(metrics) if isinstance(metrics, dict) else None if metrics is None else {m: m for m in metrics}
        )
        self.on = on
        self.save_checkpoints = save_checkpoints
        # captured here, in the trial process: on Ray Train workers there is no Tune session to ask
        trial = current_trial()
        self._in_trial = trial is not None
        self._restore_path = trial.checkpoint_path if trial is not None else None
        self._reports = 0
        self._configured: list[list[dict[str, Any]]] | None = None  # optimizer hyperparameters set by this fit
        self._restored_configured: list[list[dict[str, Any]]] | None = None  # those of the checkpoint's fit
        self._loading: dict[str, Any] | None = None  # the checkpoint being restored
        if trial is not None:  # one log line per Tune checkpoint ("Checkpoint successfully created") buries the rest
            logging.getLogger("ray.train").setLevel(logging.WARNING)

    # ------------------------------------------------------------------ restore
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Fail a fit outside Tune; resume from the trial's Tune checkpoint when the fit names no other
        (training process)."""
        if stage != "fit":
            return
        if not self._in_trial:
            raise MisconfigurationError(
                "TuneReportCallback is used outside a Ray Tune trial, so it has nowhere to report. Create it inside "
                "the training function that Tune runs (`ray.tune.Tuner(train_fn, ...)`, `lightray.tune.tuner(...)` "
                "or `lightray tune`), or remove it from a Trainer that trains without Tune."
            )
        if trainer.ckpt_path is None and self._restore_path is not None:
            trainer.ckpt_path = self._restore_path

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._loading = checkpoint  # its optimizer states are loaded after on_fit_start

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Before a restore loads the optimizer states: the hyperparameters this fit configured differently
        from the fit that wrote the checkpoint (a PBT mutation) replace the checkpoint's."""
        self._configured = _optimizer_hparams(trainer.optimizers)
        loading, self._loading = self._loading, None
        before, self._restored_configured = self._restored_configured, None
        if loading is None or before is None:
            return
        for state, groups_now, groups_before in zip(loading.get("optimizer_states", []), self._configured, before):
            for group, now, then in zip(state["param_groups"], groups_now, groups_before):
                group.update({key: value for key, value in now.items() if then.get(key) != value})

    def state_dict(self) -> dict[str, Any]:
        return {"reports": self._reports, "optimizer_hparams": self._configured}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._reports = int(state_dict.get("reports", 0))
        self._restored_configured = state_dict.get("optimizer_hparams")

    # ------------------------------------------------------------------ events
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._event(trainer, "validation_end")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._event(trainer, "validation_epoch_end")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._event(trainer, "train_epoch_end")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._event(trainer, "train_end")

    monitors_epoch_end = True  # on_train_epoch_end after the module's own, as ModelCheckpoint

    def _event(self, trainer: Trainer, event: str) -> None:
        if event != self.on or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = self._reduced_metrics(trainer)
        checkpoint = None
        if self.save_checkpoints:
            from lightray.checkpoint import dump_checkpoint

            self._reports += 1  # counted before the dump: the checkpoint knows it was reported
            state = dump_checkpoint(trainer)  # every rank: hooks run everywhere
            checkpoint = _to_bytes(state) if trainer.is_global_zero else None
        else:
            self._reports += 1
        if not trainer.is_global_zero:
            return
        from lightray.ray_backend.channel import call_on_driver, driver_channel

        if driver_channel() is None:  # the trial trains in this process
            report_to_tune(metrics, checkpoint)
        else:  # rank 0 of the trial's Ray Train run: the trial reports it, and Tune decides before training goes on
            call_on_driver(self._reports, report_to_tune, metrics, checkpoint)

    def _reduced_metrics(self, trainer: Trainer) -> dict[str, float]:
        """The chosen metrics, averaged over all ranks (a collective: every rank calls it)."""
        logged = {
            key: value
            for key, value in trainer.callback_metrics.items()
            if isinstance(value, torch.Tensor | float | int) and torch.as_tensor(value).numel() == 1
        }
        wanted = self.metrics if self.metrics is not None else {key: key for key in sorted(logged)}
        missing = sorted(source for source in wanted.values() if source not in logged)
        if missing:
            raise MisconfigurationError(
                f"TuneReportCallback: metric(s) {missing} were not logged by {self.on}; the logged metrics are "
                f"{sorted(logged)}. Log them with `self.log(name, value)`, or report one of these."
            )
        names = list(wanted)
        values = torch.stack([torch.as_tensor(logged[wanted[n]]).detach().to(torch.float64).cpu() for n in names])
        if trainer.world_size > 1:
            values = trainer.strategy.reduce(values, "mean")
        reported = {name: float(value) for name, value in zip(names, values.tolist())}
        reported.setdefault("epoch", trainer.current_epoch)
        reported.setdefault("step", trainer.global_step)
        return reported


def report_to_tune(metrics: dict[str, float], checkpoint: bytes | None) -> None:
    """Report to Tune, with the checkpoint as a folder holding ``checkpoint.ckpt`` (trial process)."""
    import ray.tune

    if checkpoint is None:
        ray.tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="lightray-tune-") as folder:
        with open(os.path.join(folder, CHECKPOINT_FILE), "wb") as f:
            f.write(checkpoint)
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(folder))


def _to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _optimizer_hparams(optimizers: list[Any]) -> list[list[dict[str, Any]]]:
    """Each optimizer's param-group settings that are plain values (lr, momentum, betas, ...)."""

    def plain(value: Any) -> bool:
        return (
            value is None
            or isinstance(value, bool | int | float | str)
            or (isinstance(value, tuple) and all(plain(v) for v in value))
        )

    return [
        [{k: v for k, v in group.items() if k != "params" and plain(v)} for group in getattr(opt, "param_groups", [])]
        for opt in optimizers
    ]
