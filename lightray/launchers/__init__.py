"""Launchers: where a Trainer's stage runs. The Trainer picks one when it is built and hands it every stage.

``InProcessLauncher`` runs the loop in this process (local CPU or one GPU, and inside each Ray Train worker);
``lightray.ray_backend.launcher.RayLauncher`` runs it on Ray Train workers, each with an in-process launcher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lightray.states import TrainerFn
    from lightray.trainer import Trainer


class Launcher(Protocol):
    def launch(self, trainer: Trainer, fn: TrainerFn, run: Callable[[], Any]) -> Any:
        """Run stage ``fn`` of ``trainer``; ``run`` runs it in this process. Returns the stage's result."""
        ...
