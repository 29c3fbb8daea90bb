"""The book profiles: the one place that says what ``smoke`` and ``full`` mean for every chapter."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from battgen.train import TrainConfig

__all__ = ["PROFILES", "Profile", "profile"]


@dataclass(frozen=True)
class Profile:
    """The settings of one book profile; the chapters read them, never the profile's name."""

    name: str
    epochs: int  # training epochs (the paper: 50)
    seeds: tuple[int, ...]  # training seeds of the paper's protocol (the runner's `seeds` parameter)
    leakfree_seeds: tuple[int, ...]  # seeds of the leak-free protocol and of the estimator
    folds: int  # grouped cross-validation folds of the leak-free protocol
    cases: tuple[int, ...]  # the paper's cases (battgen.protocol.CASES) the leak-free chapter runs
    grid_points: int  # points of the retirement-scale axis of the economic chapter
    # threads a stack of CVAE fits may use (battgen.train.worker_threads: one stack per thread); None: one per
    # usable core. Chapters run side by side, but the longest one ends alone: one thread would idle a core then.
    # The fits do not depend on how they are spread over threads (the same tables bit for bit).
    threads: int | None = None

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The paper's training settings with this profile's epochs and threads, then ``overrides``."""
        from battgen.train import TrainConfig

        return replace(TrainConfig(epochs=self.epochs, threads=self.threads), **overrides)


PROFILES: dict[str, Profile] = {
    # the paper's settings
    "full": Profile("full", epochs=50, seeds=(0, 1, 2), leakfree_seeds=(0, 1, 2, 3, 4), folds=3,
                    cases=tuple(range(8)), grid_points=121),
    # few epochs, one seed, one interpolation and one extrapolation case: for CI
    "smoke": Profile("smoke", epochs=5, seeds=(0,), leakfree_seeds=(0,), folds=2, cases=(1, 6), grid_points=25),
}


def profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (a :class:`Profile` is returned as is)."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown book profile {name!r}; expected one of {sorted(PROFILES)}") from None
