"""Speed and memory of battgen's reproduction, on this machine.

Prints: the wall time of one CVAE fit (the paper's settings, LMO 10 Ah case 0, the largest
fit), and the wall time and peak resident memory of
``battgen reproduce --battery all --pulse-width 5 --seeds 0`` (all 4 types x 8 cases, both
phases) run as a fresh process, exactly as a user would type it.

Targets (issue 2): the grid in at most 40 s with peak memory under 600 MB on 2 cores; the
authors' TensorFlow code needs 384 s and 870 MB here.

Usage: python benchmarks/bench_reproduce.py [--repeat N] [--pulse-width 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def one_fit(data_dir: str | None) -> float:
    from battgen.data import load_pulsebat
    from battgen.evaluation.generators import FITS, GeneratorSettings
    from battgen.evaluation.split import paper_split
    from battgen.train import fit_generators

    df = load_pulsebat("LMO10", data_dir=data_dir)
    job = FITS["paper"].job(paper_split(df, case=0, seed=0), GeneratorSettings().feature_bounds)
    t0 = time.perf_counter()
    fit_generators([job], progress=False)
    return time.perf_counter() - t0, len(job.features)


def grid(pulse_width: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "battgen.cli", "reproduce", "--battery", "all", "--pulse-width", str(pulse_width),
               "--seeds", "0", "--out", out, "--no-progress"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak_kb, before) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--pulse-width", type=int, default=5)
    args = ap.parse_args()
    data_dir = os.environ.get("BATTGEN_DATA_DIR")
    import torch

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}")
    secs, n = one_fit(data_dir)
    print(f"one CVAE fit (LMO 10 Ah case 0, {n} rows, 50 epochs, batch 32): {secs:.2f} s")
    for i in range(args.repeat):
        secs, mem = grid(args.pulse_width)
        print(f"battgen reproduce --battery all --pulse-width {args.pulse_width} --seeds 0 "
              f"(4 types x 8 cases, both phases): {secs:.1f} s wall, peak RSS {mem:.0f} MB")


if __name__ == "__main__":
    main()
