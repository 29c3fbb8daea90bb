"""Run the full leak-free evaluation (5 seeds, 3 folds, all battery types and cases, 50 epochs).

Usage: python benchmarks/bench_leakfree.py [--seeds 0 1 2 3 4] [--epochs 50] [--out results/06_beyond_the_paper]

Each seed's table is cached in <out>/leakfree_cache (the chapter 06 full profile reads the same
cache), so an interrupted run resumes; prints the wall time per seed and the summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from battgen.evaluation.leakfree import LeakFreeConfig, run_leakfree
from battgen.evaluation.stats import summarize_leakfree
from battgen.io import write_table
from battgen.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--out", default="results/06_beyond_the_paper")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    tables = []
    for seed in args.seeds:
        t = time.perf_counter()
        cfg = LeakFreeConfig(seeds=[seed], n_folds=args.folds, train=TrainConfig(epochs=args.epochs), progress=False)
        tables.append(run_leakfree(cfg, cache_dir=out / "leakfree_cache"))
        print(f"seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    results = pd.concat(tables, ignore_index=True)
    write_table(results, out / "leakfree_results.csv")
    summary = summarize_leakfree(results, by=("battery", "method"))
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(summary.round(2).to_string())
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
