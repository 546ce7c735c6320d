"""Lightning's strategy names and ``DDPStrategy``, as lightray runs them (driver).

lightray has one way to use several devices: one Ray Train worker per device, with PyTorch DDP between them.
So ``strategy="ddp"`` (and Lightning's spellings of it) changes nothing but the DDP options, and a
``DDPStrategy(...)`` carries options to the DDP wrapper on every worker. With one device the loop runs in this
process and DDP has nothing to do.
"""

from __future__ import annotations

import datetime
from typing import Any

# Lightning's registry names that mean "DDP" here, with the DDP options they imply
DDP_NAMES: dict[str, dict[str, Any]] = {
    "auto": {},
    "ddp": {},
    "ddp_spawn": {},
    "ddp_fork": {},
    "ddp_notebook": {},
    "single_device": {},
    "ddp_find_unused_parameters_true": {"find_unused_parameters": True},
    "ddp_find_unused_parameters_false": {},
    "ddp_spawn_find_unused_parameters_true": {"find_unused_parameters": True},
}
# names lightray does not run, and what to use instead
UNSUPPORTED: dict[str, str] = {
    "deepspeed": "DeepSpeed is not supported; use strategy='ddp' (the default for several devices), or 'fsdp' to "
    "shard a model too large for one device",
    "dp": "DataParallel is not supported (Lightning 2 removed it too); use strategy='ddp'",
    "xla": "TPUs are not supported; use strategy='ddp' on CPUs or GPUs",
    "hpu_parallel": "HPUs are not supported; use strategy='ddp' on CPUs or GPUs",
}


class DDPStrategy:
    """Options for the DDP wrapper on each Ray Train worker: ``Trainer(strategy=DDPStrategy(...), devices=2)``.

    Built on the driver; the workers pass ``find_unused_parameters``, ``static_graph``,
    ``gradient_as_bucket_view`` and any other keyword to ``torch.nn.parallel.DistributedDataParallel``.
    ``process_group_backend`` and ``timeout`` are Ray Train's to choose (gloo on CPU, NCCL on GPU): set them
    with ``TorchConfig`` through Ray if you must.
    """

    def __init__(
        self,
        find_unused_parameters: bool = False,
        static_graph: bool = False,
        gradient_as_bucket_view: bool = False,
        process_group_backend: str | None = None,
        timeout: datetime.timedelta | None = None,
        **ddp_kwargs: Any,
    ) -> None:
        self.ddp_kwargs = {
            "find_unused_parameters": find_unused_parameters,
            "static_graph": static_graph,
            "gradient_as_bucket_view": gradient_as_bucket_view,
            **ddp_kwargs,
        }
        self.process_group_backend, self.timeout = process_group_backend, timeout

    def __repr__(self) -> str:
        return f"DDPStrategy({', '.join(f'{k}={v!r}' for k, v in self.ddp_kwargs.items())})"


def ddp_kwargs(strategy: Any) -> dict[str, Any]:
    """The DDP wrapper's options that ``strategy`` (a name or a ``DDPStrategy``) implies."""
    if isinstance(strategy, DDPStrategy):
        return dict(strategy.ddp_kwargs)
    return dict(DDP_NAMES.get(strategy, {})) if isinstance(strategy, str) else {}


def strategy_problem(strategy: Any) -> str | None:
    """Why ``strategy`` cannot run here (naming what to use), or None when it can."""
    from lightray.strategies.fsdp import fsdp_options

    if isinstance(strategy, DDPStrategy) or (isinstance(strategy, str) and strategy in DDP_NAMES):
        return None
    if fsdp_options(strategy) is not None:
        return None
    name = strategy if isinstance(strategy, str) else type(strategy).__name__
    key = str(name).lower().removesuffix("strategy")
    for unsupported, why in UNSUPPORTED.items():
        if key.startswith(unsupported):
            return f"strategy={strategy!r}: {why}"
    return (
        f"strategy={strategy!r}: unknown strategy. Use 'auto' or 'ddp' (one Ray Train worker per device, DDP "
        f"between them), lightray.strategies.DDPStrategy(find_unused_parameters=...), or 'fsdp' / "
        f"FSDPStrategy(...) for sharded training. Names accepted: "
        + ", ".join([*DDP_NAMES, "fsdp", "fsdp_cpu_offload"])
    )
