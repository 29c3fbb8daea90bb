"""The CVAE's and the trainer's settings, as plain dataclasses that need no torch.

:class:`CVAEConfig` (the network) and :class:`TrainConfig` (the optimisation) are read by the
evaluation protocols, the estimator and the command line long before a network is built; they
live here so that importing them costs nothing. ``battgen.model.CVAEConfig`` and
``battgen.train.TrainConfig`` are these same classes. So do the two ways battgen's work uses the
process: :func:`usable_cores` and :func:`paused_collector`.
"""

from __future__ import annotations

import gc
import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

__all__ = ["CVAEConfig", "TrainConfig", "paused_collector", "usable_cores"]


def usable_cores() -> int:
    """CPU cores this process may run on (what ``threads=None`` settings spread their work over)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_GC_LOCK = threading.Lock()
_gc_pauses = 0  # pauses open now (trainers, scorers)
_gc_was_on = False  # the collector's state before the first of them


@contextmanager
def paused_collector() -> Iterator[None]:
    """The garbage collector off while generators train and splits are scored: that work makes no
    reference cycles, but its many small objects set off collections of the heap. Counted across
    threads: the collector stays off until the last pause ends, which restores the state from
    before the first."""
    global _gc_pauses, _gc_was_on
    with _GC_LOCK:
        if _gc_pauses == 0:
            _gc_was_on = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_on:
                gc.enable()


@dataclass
class CVAEConfig:
    """Hyper-parameters; the defaults are the paper's."""

    feature_dim: int = 21  # U1..U21
    condition_dim: int = 2  # [SOC, SOH]
    embedding_dim: int = 64  # condition embedding units = key/value tokens; also the attention key_dim
    intermediate_dim: int = 64  # hidden units = query tokens
    latent_dim: int = 2
    num_heads: int = 1
    w_recon: float = 0.5  # weight of feature_dim * MSE
    w_kl: float = 0.5  # weight of the KL divergence
    conditioning: str = "attention"  # "attention" (paper) or "concat" (ablation: no attention)
    output: str = "sigmoid"  # "sigmoid" (paper: features MinMax-scaled to [0, 1]) or "linear"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the paper's (Keras defaults for Adam)."""

    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-7
    threads: int | None = None  # CPU threads a stack of fits may use; None: chosen from the machine's state
    free_bits: float = 0.0  # KL floor per latent dimension in nats, on the batch mean (0: the paper's plain KL)
    kl_anneal_epochs: int = 0  # ramp the KL weight linearly from 1/n to 1 over the first n epochs (0: paper, no ramp)
