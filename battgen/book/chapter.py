"""The shared setup of a chapter: one call in its Setup cell, no science."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from battgen.book.profiles import Profile
from battgen.book.profiles import profile as resolve_profile

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ChapterContext", "setup_chapter"]


@dataclass(frozen=True)
class ChapterContext:
    """What a chapter needs from its parameters: the profile's settings, its output folder, the data."""

    name: str  # "05_economic_analysis"
    profile: Profile
    out_dir: Path  # <results_dir>/<name>, exists
    data_dir: str | None  # the PulseBat folder (None: $BATTGEN_DATA_DIR, then the download cache)
    _frames: dict[int, dict[str, pd.DataFrame]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def frames(self, pulse_width_s: int = 5) -> dict[str, pd.DataFrame]:
        """The PulseBat table of each battery type of ``battgen.data.BATTERIES``, read on first use."""
        if pulse_width_s not in self._frames:
            from battgen.data import BATTERIES, load_pulsebat

            self._frames[pulse_width_s] = {
                b: load_pulsebat(b, pulse_width_s, data_dir=self.data_dir) for b in BATTERIES
            }
        return self._frames[pulse_width_s]


def setup_chapter(
    name: str,
    *,
    profile: str | Profile,
    results_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    seeds: Sequence[int] | None = None,
) -> ChapterContext:
    """Apply the plotting style, resolve ``profile`` (with ``seeds``, if given, in place of its
    seeds) and create ``results_dir/name``."""
    from battgen import plotting

    plotting.use_style()
    settings = resolve_profile(profile)
    if seeds is not None:
        settings = replace(settings, seeds=tuple(int(s) for s in seeds))
    out_dir = Path(results_dir) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    return ChapterContext(name, settings, out_dir, None if data_dir is None else str(data_dir))
