"""Where a stage's data comes from: loaders passed to the entry point, else the datamodule's, else the module's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lightray.core.datamodule import LightningDataModule
from lightray.core.module import LightningModule
from lightray.hooks import is_overridden

if TYPE_CHECKING:
    from lightray.loops.hook_caller import HookCaller


@dataclass
class DataSources:
    """The data of one stage. ``given`` holds the loaders passed to ``fit``/``validate``/... by key
    (``train``, ``val``, ``test``, ``predict``); the rest comes from ``<key>_dataloader`` hooks."""

    module: LightningModule | None = None
    datamodule: LightningDataModule | None = None
    given: dict[str, Any] = field(default_factory=dict)

    def owner(self, key: str) -> Any:
        """Who answers ``<key>_dataloader``: the datamodule when it defines it, else the module."""
        method = f"{key}_dataloader"
        if self.datamodule is not None and is_overridden(self.datamodule, method, LightningDataModule):
            return self.datamodule
        return self.module

    def has(self, key: str) -> bool:
        method = f"{key}_dataloader"
        return key in self.given or any(
            owner is not None and is_overridden(owner, method, base)
            for owner, base in ((self.datamodule, LightningDataModule), (self.module, LightningModule))
        )

    def load(self, key: str, hooks: HookCaller) -> Any:
        """The loader(s) for ``key``; calls the ``<key>_dataloader`` hook when none was given."""
        if key in self.given:
            return self.given[key]
        return hooks.call_on(self.owner(key), f"{key}_dataloader")
