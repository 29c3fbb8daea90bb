"""Seconds per file for the two readers of PulseBat workstep files: features and economics.

Usage: python benchmarks/bench_features.py [--repeat N]

Times battgen.features.extract (5 s pulses, SOC 5-50 %, U1-U21) and
battgen.economics.measure_level_cost (every level, full pulse sequence) on the two workstep
files; both read through battgen.workstep.read_workstep, which dominates their time. The files
are found with battgen.data.fetch in $BATTGEN_DATA_DIR (default /work/shared/pulsebat).
Target: under 2 s per file for each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

from battgen.data import fetch
from battgen.economics import measure_level_cost
from battgen.features import ExtractionWarning, extract

FILES = [
    "workstep/LMO_C_10_B_2_SOC_5-55_Part_1-1_ID_PIP15827A00221240.xlsx",
    "workstep/NMC_C_21_B_6_SOC_5-90_Part_1-2_ID_02LCC02100101A87Y0052124.xlsx",
]
TARGET_S = 2.0


def time_file(key: str, repeat: int, read=extract) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``read`` (default: feature extraction) on one registered file."""
    path = fetch(key, data_dir=os.environ.get("BATTGEN_DATA_DIR", "/work/shared/pulsebat"), download=False)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtractionWarning)
            read(path)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    worst = 0.0
    for label, read in (("extract", extract), ("measure_level_cost", measure_level_cost)):
        for key in FILES:
            times = time_file(key, args.repeat, read)
            worst = max(worst, max(times))
            print(f"{label} {key.split('/')[-1]}: median {statistics.median(times):.3f} s/file, "
                  f"min {min(times):.3f}, max {max(times):.3f} ({args.repeat} runs)")
    print(f"slowest run {worst:.3f} s: {'OK' if worst < TARGET_S else 'SLOWER THAN'} target {TARGET_S:g} s")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
