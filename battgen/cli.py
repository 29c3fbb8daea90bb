"""The ``battgen`` command line: a thin shell over the package API."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from battgen.protocol import ALL_SOC

__all__ = ["main", "build_parser"]


def _cmd_fetch(args: argparse.Namespace) -> int:
    import shutil

    from battgen.data import REGISTRY, fetch

    for key in REGISTRY:
        path = fetch(key, args.data_dir)
        if args.dest:
            target = Path(args.dest) / key
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copyfile(path, target)
            path = target
        print(f"ok  {key}  ->  {path}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from battgen.data import BATTERIES
    from battgen.evaluation.paper import ExperimentConfig, run_grid, summarize, write_results
    from battgen.train import TrainConfig

    batteries = list(BATTERIES) if args.battery == ["all"] else args.battery
    cfg = ExperimentConfig(batteries=batteries, pulse_width_s=args.pulse_width, cases=args.cases, seeds=args.seeds,
                           train=TrainConfig(epochs=args.epochs), data_dir=args.data_dir,
                           progress=False if args.no_progress else None)
    t0 = time.perf_counter()
    results = run_grid(cfg)
    elapsed = time.perf_counter() - t0
    paths = write_results(results, args.out)
    table = summarize(results).pivot_table(index=["battery", "case", "kind"], columns="method", values="mape", sort=False)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(f"Mean MAPE (%) over unseen SOC levels and {len(cfg.seeds)} seed(s); pulse width {args.pulse_width} s")
        print(table.round(2).to_string())
    print(f"\n{len(results)} rows in {elapsed:.1f} s; wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from battgen.features import extract_dir
    from battgen.io import write_table

    df = extract_dir(args.workstep_dir, socs=tuple(args.soc), pulse_width_s=args.pulse_width,
                     progress=False if args.no_progress else None)
    write_table(df, args.out)
    print(f"wrote {len(df)} rows to {args.out}")
    for line in df.attrs.get("report", []):
        print(f"note: {line}", file=sys.stderr)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from battgen.data import load_pulsebat
    from battgen.estimator import SOHEstimator

    t0 = time.perf_counter()
    if args.data:
        df = pd.read_csv(args.data)
        source = args.data
    else:
        df = load_pulsebat(args.battery, args.pulse_width, data_dir=args.data_dir)
        source = f"PulseBat {df['battery'].iloc[0]} ({args.pulse_width} s pulses)"
    levels = sorted(set(args.soc))
    if "soc" not in df.columns:
        raise ValueError(f"{source}: column 'soc' (fraction) is missing")
    soc = pd.to_numeric(df["soc"], errors="coerce")
    if soc.isna().any():
        raise ValueError(f"{source}: column 'soc', row {int(np.flatnonzero(soc.isna())[0]) + 2}: not a number (expected a fraction)")
    socs = np.rint(soc.to_numpy(float) * 100).astype(int)
    df = df[np.isin(socs, levels)]
    if df.empty:
        raise ValueError(f"{source}: no rows at SOC levels {levels} %")
    kwargs = {"generator": args.generator} if args.generator else {}
    est = SOHEstimator(**kwargs, epochs=args.epochs, random_state=args.seed)
    est.info_ = {"trained_on": source, "battery": str(df["battery"].iloc[0]) if "battery" in df.columns else None}
    est.fit(df, progress=False if args.no_progress else None)
    est.save(args.out)
    print(f"trained {est!r} on {len(df)} measured rows at {levels} % SOC + {len(est.train_y_) - len(df)} generated rows "
          f"({', '.join(str(s) for s in est.generated_soc_) or 'none'} % SOC) in {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from battgen.estimator import SOHEstimator, read_pulses
    from battgen.io import write_table

    est = SOHEstimator.load(args.model)
    ids, X = read_pulses(args.pulses, id_column=args.id_column)
    out = ids.copy()
    out["soh_estimate"] = est.predict(X)
    write_table(out, args.out)
    print(f"estimated SOH of {len(out)} pulse rows with {args.model}; wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="battgen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download and verify the PulseBat files (sha256)")
    p.add_argument("--data-dir", default=None, help="folder looked in first (default $BATTGEN_DATA_DIR)")
    p.add_argument("--dest", default=None, help="also copy the verified files into this folder")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("reproduce", help="run the paper's eight-case grid (Phase 1 vs Phase 2)")
    p.add_argument("--battery", nargs="+", default=["all"], help="battery types (NMC2.1 LMO10 NMC21 LFP35) or 'all'")
    p.add_argument("--pulse-width", type=int, default=5, choices=[3, 5], help="pulse width in s (5: paper, 3: authors' code)")
    p.add_argument("--cases", type=int, nargs="+", default=list(range(8)), help="cases 0-7")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--out", default="results/", help="output folder for results.csv/json and summary.csv")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("extract-features", help="extract U1..Un from a folder of workstep-layer files")
    p.add_argument("workstep_dir")
    p.add_argument("--soc", type=int, nargs="+", default=list(ALL_SOC), help="SOC levels in %%")
    p.add_argument("--pulse-width", type=float, default=5)
    p.add_argument("--out", required=True, help="CSV (or .json) to write")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("train", help="train the deployable SOH estimator (measured + generated SOC levels)")
    p.add_argument("--battery", default="LMO10", help="battery type whose PulseBat rows to train on (NMC2.1 LMO10 NMC21 LFP35)")
    p.add_argument("--soc", type=int, nargs="+", required=True, help="measured SOC levels in %% (e.g. 5 25 50)")
    p.add_argument("--out", required=True, help="model file to write (e.g. model.pt)")
    p.add_argument("--generator", default=None, choices=["interpolation", "residual", "cvae", "cvae_plus", "none"],
                   help="how the unmeasured SOC levels are generated (default: SOHEstimator's default)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="random_state of the generator and the forest")
    p.add_argument("--pulse-width", type=int, default=5, choices=[3, 5])
    p.add_argument("--data", default=None, help="train on this CSV (battgen.data schema) instead of PulseBat")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("estimate", help="estimate SOH from pulse features (U1..U21, volts) with a trained model")
    p.add_argument("pulses", help="CSV in the battgen.data schema or with just U1..U21 (+ an id column)")
    p.add_argument("--model", required=True, help="model file written by `battgen train`")
    p.add_argument("--out", required=True, help="CSV (or .json) to write: id column(s) + soh_estimate")
    p.add_argument("--id-column", default=None, help="column passed through (default: id / battery_id / cell if present)")
    p.set_defaults(func=_cmd_estimate)
    return parser


def _version() -> str:
    from battgen._version import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as exc:
        print(f"battgen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
