"""The battgen command line: a thin shell over the package API.

Every command checks its options and its output location before any work. Outputs are written
atomically (complete or absent, never half-written) with ordinary permissions (as created under
your umask). An output is never one of the command's inputs, and an existing output file is not
replaced unless you pass --force. Any error is one line on stderr naming the file, option,
column or row and the cause, with exit code 2 (--debug also prints the traceback).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

from battgen.protocol import ALL_SOC, CASES, SOC_STEP_PCT, levels_text as _levels, soc_percent

__all__ = ["main", "run", "build_parser"]

OUTPUT_POLICY = ("Outputs: never one of the command's inputs; an existing output file is kept and the command "
                 "stops unless --force is given; files are written atomically with ordinary permissions.")
RESULT_FILES = ("results.csv", "results.json", "summary.csv")  # what battgen.evaluation.paper.write_results writes


# --------------------------------------------------------------------------- option types


class _Parser(argparse.ArgumentParser):
    """argparse with errors in one line: ``battgen train: error: argument --seed: ...``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _integer(lo: int, hi: int | None, what: str, step: int = 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lo or (hi is not None and value > hi) or value % step:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


_NON_NEGATIVE = _integer(0, 2**32 - 1, "a non-negative integer (0 to 2**32 - 1)")
_POSITIVE = _integer(1, None, "a positive integer")
_CASE = _integer(min(CASES), max(CASES), f"a case number {min(CASES)}-{max(CASES)}")
_TRAIN_SOC = _integer(1, 100, "an SOC level in % (an integer from 1 to 100)")
_REGRESSORS = ("forest", "invariant_forest", "invariant_ridge", "invariant_ensemble", "soc_then_soh")
"""battgen.estimator.REGRESSORS, written out so that parsing imports no scikit-learn (a test keeps them equal)."""
_WORKSTEP_SOC = _integer(SOC_STEP_PCT, 100, f"an SOC level of the PulseBat test in % (a multiple of {SOC_STEP_PCT} "
                         "from 5 to 100)", SOC_STEP_PCT)


def _battery(text: str, allow_all: bool = False) -> str:
    from battgen.data import battery_type

    if allow_all and text == "all":
        return text
    try:
        return battery_type(text).key
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workstep_width(text: str) -> float:
    from battgen.protocol import PULSE_WIDTHS_S

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not any(abs(value - w) < 1e-9 for w in PULSE_WIDTHS_S):
        raise argparse.ArgumentTypeError(f"{text!r} is not a PulseBat pulse width; expected one of "
                                         f"{', '.join(f'{w:g}' for w in PULSE_WIDTHS_S)} s")
    return value


# --------------------------------------------------------------------------- helpers


def _pulsebat_inputs(keys: Iterable[str], data_dir: str | None) -> list[Path]:
    """Where the PulseBat files ``keys`` may be read from (an output must not be one of them)."""
    from battgen.data import cache_dir, data_dir_from_env

    folders = [Path(data_dir).expanduser() if data_dir else data_dir_from_env(), cache_dir()]
    return [folder / key for folder in folders if folder is not None for key in keys]


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


# --------------------------------------------------------------------------- commands


def _cmd_fetch(args: argparse.Namespace) -> int:
    from battgen.data import REGISTRY, fetch, sha256
    from battgen.io import atomic_path, check_output

    keep = set()  # destination files that already are the published ones: nothing to write for them
    if args.dest:
        keep = {key for key, entry in REGISTRY.items()
                if (Path(args.dest) / key).is_file() and sha256(Path(args.dest) / key) == entry.sha256}
        if len(keep) < len(REGISTRY):
            check_output(args.dest, folder=True, option="--dest")
        for key in set(REGISTRY) - keep:
            check_output(Path(args.dest) / key, force=args.force, option="--dest")
    for key in REGISTRY:
        path = fetch(key, args.data_dir)
        if args.dest:
            target = Path(args.dest) / key
            if key not in keep:
                with atomic_path(target) as tmp:
                    tmp.write_bytes(path.read_bytes())
            path = target
        print(f"ok  {key}  ->  {path}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from battgen.data import BATTERIES
    from battgen.io import check_output

    batteries = list(BATTERIES) if "all" in args.battery else list(dict.fromkeys(args.battery))
    inputs = {p: "a PulseBat file read" for p in _pulsebat_inputs([BATTERIES[b].files[args.pulse_width] for b in batteries],
                                                                   args.data_dir)}
    check_output(args.out, folder=True, option="--out")
    for name in RESULT_FILES:
        check_output(Path(args.out) / name, inputs=inputs, force=args.force, option="--out")
    import pandas as pd

    from battgen.evaluation.paper import ExperimentConfig, run_grid, summarize, write_results
    from battgen.train import TrainConfig

    cfg = ExperimentConfig(batteries=batteries, pulse_width_s=args.pulse_width, cases=sorted(set(args.cases)),
                           seeds=list(dict.fromkeys(args.seeds)), train=TrainConfig(epochs=args.epochs),
                           data_dir=args.data_dir, progress=_progress(args))
    t0 = time.perf_counter()
    results = run_grid(cfg)
    elapsed = time.perf_counter() - t0
    paths = write_results(results, args.out)
    table = summarize(results).pivot_table(index=["battery", "case", "kind"], columns="method", values="mape", sort=False)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(f"Mean MAPE (%) over unseen SOC levels and {len(cfg.seeds)} seed(s); pulse width {args.pulse_width} s")
        print(table.round(2).to_string())
    print(f"\n{len(results)} rows in {elapsed:.1f} s; wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    import numpy as np

    from battgen.features import ExtractionWarning, extract, extract_dir
    from battgen.io import check_output, write_table

    source = Path(args.workstep)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder; expected a workstep .xlsx file or a folder of them")
    inputs = [source] if source.is_file() else sorted(source.glob("*.xlsx"))
    check_output(args.out, inputs={p: "a workstep file read" for p in inputs}, force=args.force, option="--out")
    socs = list(dict.fromkeys(args.soc))
    with warnings.catch_warnings():  # the report below says the same, once
        warnings.simplefilter("ignore", ExtractionWarning)
        if source.is_file():
            df = extract(source, socs, args.pulse_width)
        else:
            df = extract_dir(source, socs, args.pulse_width, progress=_progress(args))
    report = df.attrs.get("report", [])
    found = set(np.rint(df["soc"].to_numpy(float) * 100).astype(int).tolist())
    # a level no file holds is an error; one whose pulses were damaged in some file is a note (and dropped)
    absent = [s for s in socs if s not in found and (df.empty or not any(f"SOC {s} % dropped" in r for r in report))]
    if absent:
        why = [line for line in report if any(f"SOC {s} %" in line for s in absent)] or report
        more = f"; and {len(why) - 1} more note(s)" if len(why) > 1 else ""
        raise ValueError(f"{source}: no rows at SOC {_levels(absent)} % for {args.pulse_width:g} s pulses "
                         f"({why[0] if why else 'no file has them'}{more}); nothing written")
    for line in report:
        print(f"battgen extract-features: note: {line}", file=sys.stderr)
    write_table(df, args.out)
    print(f"wrote {len(df)} rows at SOC {_levels(sorted(found))} % to {args.out}")
    return 0


def _default_generator() -> str:
    from battgen.estimator import SOHEstimator

    return SOHEstimator().generator


def _cmd_train(args: argparse.Namespace) -> int:
    from battgen.data import BATTERIES
    from battgen.io import check_output

    inputs = {args.data: "the training data (--data)"} if args.data else {
        p: "the PulseBat file read" for p in _pulsebat_inputs([BATTERIES[args.battery].files[args.pulse_width]], args.data_dir)}
    check_output(args.out, inputs=inputs, force=args.force, option="--out")
    if args.regressor not in (None, "forest") and args.generator not in (None, "interpolation"):
        raise ValueError(f"--regressor {args.regressor} interpolates each battery's pulses in SOC itself; it takes "
                         f"--generator interpolation (the default), not --generator {args.generator}")
    t0 = time.perf_counter()
    from battgen.estimator.inputs import declared_design, training_rows

    df, source = training_rows(args.data, args.battery, args.pulse_width, args.data_dir, args.soc)
    levels = sorted(set(soc_percent(df).tolist()))  # the rows kept: those at the requested (or every) level
    if len(levels) < 2 and args.generator != "none":
        option = f"--soc {levels[0]}" if args.soc else f"{source}: column 'soc'"
        raise ValueError(f"{option}: one measured SOC level; generator {args.generator or _default_generator()!r} "
                         f"needs at least two to learn how the pulses change with SOC (measure another level, or pass "
                         f"--generator none to train on {levels[0]} % only)")
    design = declared_design(df, source, args.design)
    from battgen.estimator import SOHEstimator

    est = SOHEstimator(generator=args.generator or _default_generator(), regressor=args.regressor or "forest",
                       soc_levels=ALL_SOC, epochs=args.epochs, random_state=args.seed)
    est.info_ = {"trained_on": source}
    est.fit(df, progress=_progress(args))
    if design is not None:
        est.design_["battery"] = design
    est.save(args.out)
    n_generated = len(est.train_y_) - est.n_measured_
    generated = f"{n_generated} generated rows at {_levels(est.generated_soc_)} % SOC" if n_generated else "no generated rows"
    print(f"trained {est!r} on {est.n_measured_} measured rows at {_levels(est.measured_soc_)} % SOC and {generated} "
          f"in {time.perf_counter() - t0:.1f} s; design {est.design_['battery']}; wrote {args.out}")
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from battgen.data import FEATURES
    from battgen.io import check_output, read_table, write_table

    check_output(args.out, inputs={args.pulses: "the pulses file read", args.model: "the model (--model)"},
                 force=args.force, option="--out")
    read_table(args.pulses, "pulse voltages U1..U21")  # unreadable: said before the model loads (forest refit)
    from battgen.estimator import SOHEstimator, declared_mismatches, read_pulses, refuse_declared

    est = SOHEstimator.load(args.model)
    ids, X = read_pulses(args.pulses, id_column=args.id_column)
    if not args.ignore_declared:
        refuse_declared(X, est.design_, args.pulses, hint=" (pass --ignore-declared to estimate anyway, rows flagged)")
    out = ids.copy()
    if args.interval is None:
        out["soh_estimate"] = est.predict(X[FEATURES])
    else:
        out["soh_estimate"], out["soh_lower"], out["soh_upper"] = est.predict(X[FEATURES], interval=args.interval)
    out["novelty"] = est.novelty_score(X[FEATURES])
    out["novel"] = out["novelty"] > est.novelty_threshold_
    n_novel = int(out["novel"].sum())
    if n_novel:
        print(f"battgen estimate: warning: {n_novel} of {len(out)} rows are unlike the pulses the model was trained on "
              f"(novelty above {est.novelty_threshold_:.3g}); flagged in column novel", file=sys.stderr)
    if args.ignore_declared:
        out["declared_mismatch"] = declared_mismatches(X, est.design_).to_numpy()
        n = int((out["declared_mismatch"] != "").sum())
        if n:
            print(f"battgen estimate: warning: {n} of {len(out)} rows declare another battery design or pulse width "
                  f"than the model's; flagged in column declared_mismatch", file=sys.stderr)
    write_table(out, args.out)
    span = "" if args.interval is None else f" with {args.interval:.0%} intervals"
    print(f"estimated SOH of {len(out)} pulse rows{span} with {args.model} ({n_novel} flagged as novel); wrote {args.out}")
    return 0


def _coverage(text: str) -> float:
    """An interval coverage strictly between 0 and 1 (argparse type: the error names the option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a coverage between 0 and 1, e.g. 0.9; got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a coverage between 0 and 1 (exclusive), e.g. 0.9; got {text!r}")
    return value


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="battgen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="on an error, also print the Python traceback")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=OUTPUT_POLICY, parents=[common])

    def force(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--force", action="store_true", help=f"replace {what} if it exists (an input is never replaced)")

    p = command("fetch", "download and verify the PulseBat files (sha256)")
    p.add_argument("--data-dir", default=None, help="folder looked in first (default $BATTGEN_DATA_DIR)")
    p.add_argument("--dest", default=None, help="also copy the verified files into this folder (files already there "
                                                "and identical are kept)")
    force(p, "a destination file that differs from the published one")
    p.set_defaults(func=_cmd_fetch)

    p = command("reproduce", "run the paper's eight-case grid (Phase 1 vs Phase 2)")
    p.add_argument("--battery", nargs="+", type=lambda t: _battery(t, allow_all=True), default=["all"],
                   help="battery types (NMC2.1 LMO10 NMC21 LFP35) or 'all'")
    p.add_argument("--pulse-width", type=int, default=5, choices=[3, 5], help="pulse width in s (5: paper, 3: authors' code)")
    p.add_argument("--cases", type=_CASE, nargs="+", default=sorted(CASES), help="cases 0-7")
    p.add_argument("--seeds", type=_NON_NEGATIVE, nargs="+", default=[0], help="non-negative integers")
    p.add_argument("--epochs", type=_POSITIVE, default=50, help="CVAE training epochs (positive)")
    p.add_argument("--out", default="results/", help=f"output folder for {', '.join(RESULT_FILES)}")
    force(p, "those files")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_reproduce)

    p = command("extract-features", "extract U1..Un from workstep-layer files (one file, or a folder of them)")
    p.add_argument("workstep", metavar="WORKSTEP", help="a workstep .xlsx file or a folder of them")
    p.add_argument("--soc", type=_WORKSTEP_SOC, nargs="+", default=list(ALL_SOC),
                   help="SOC levels in %% (a level that no file holds is an error and nothing is written; a "
                        "level dropped from a file for damaged steps is a note)")
    p.add_argument("--pulse-width", type=_workstep_width, default=5.0, help="pulse width in s (default 5)")
    p.add_argument("--out", required=True, help="CSV (or .json) to write")
    force(p, "--out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_extract)

    p = command("train", "train the deployable SOH estimator (measured + generated SOC levels)")
    p.add_argument("--battery", type=_battery, default="LMO10", help="battery type whose PulseBat rows to train on "
                                                                   "(NMC2.1 LMO10 NMC21 LFP35)")
    p.add_argument("--soc", type=_TRAIN_SOC, nargs="+", default=None,
                   help="measured SOC levels in %% to train on (e.g. 5 25 50); each must have rows, and a generator needs "
                        "two or more (default: every level the training rows hold)")
    p.add_argument("--out", required=True, help="model file to write (e.g. model.pt); it records the battery design "
                                                "and pulse width of the training rows")
    force(p, "--out")
    p.add_argument("--generator", default=None, choices=["interpolation", "residual", "cvae", "cvae_plus", "none"],
                   help="how the unmeasured SOC levels are generated (default: SOHEstimator's default)")
    p.add_argument("--epochs", type=_POSITIVE, default=50, help="generator training epochs (positive)")
    p.add_argument("--seed", type=_NON_NEGATIVE, default=0, help="random_state of the generator and the forest")
    p.add_argument("--pulse-width", type=int, default=5, choices=[3, 5])
    p.add_argument("--regressor", default=None, choices=list(_REGRESSORS),
                   help="what learns SOH from the pulses: forest (the paper's random forest, default) or an estimator on "
                        "SOC-invariant pulse features (chapter 07), which takes --generator interpolation")
    p.add_argument("--data", default=None, metavar="FILE.csv",
                   help="train on your own measurements instead of PulseBat: a CSV with U1..U21 (volts), soc (fraction), "
                        "soh (fraction), battery_id (the tested battery), optionally cell and battery (the design)")
    p.add_argument("--design", default=None, metavar="NAME",
                   help="the battery design recorded in the model when the training rows have no battery column "
                        "(default: their battery column, else 'custom'); estimate refuses rows declaring another")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = command("estimate", "estimate SOH from pulse features (U1..U21, volts) with a trained model")
    p.add_argument("pulses", help="CSV (comma-separated) in the battgen.data schema or with just U1..U21 (+ an id column)")
    p.add_argument("--model", required=True, help="model file written by `battgen train`")
    p.add_argument("--out", required=True, help="CSV (or .json) to write: id column(s), soh_estimate (+ soh_lower, "
                                                "soh_upper with --interval), novelty and novel (the pulse is unlike the "
                                                "training pulses)")
    force(p, "--out")
    p.add_argument("--id-column", default=None, help="column passed through (default: id / battery_id / cell if present)")
    p.add_argument("--interval", type=_coverage, default=None, metavar="C",
                   help="also write soh_lower / soh_upper: a prediction interval of coverage C (e.g. 0.9), calibrated on "
                        "held-out training batteries (split-conformal)")
    p.add_argument("--ignore-declared", action="store_true",
                   help="estimate rows whose battery / pulse_width_s columns declare another design or pulse width than "
                        "the model's (refused by default); they are flagged in a declared_mismatch column")
    p.set_defaults(func=_cmd_estimate)
    return parser


def _version() -> str:
    from battgen._version import __version__

    return __version__


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line; an exception battgen does not raise on purpose says so."""
    text = " ".join(str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).split())
    if not isinstance(exc, (ValueError, OSError, KeyError, RuntimeError)):
        text = f"unexpected {type(exc).__name__}: {text} (run again with --debug to see where)"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an option error already printed in one line
        return exc.code if isinstance(exc.code, int) else 2
    name = f"battgen {args.command}"
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_a, **_k: print(f"{name}: warning: {' '.join(str(message).split())}",
                                                                file=sys.stderr)
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f"{name}: interrupted; nothing written", file=sys.stderr)
            return 130
        except Exception as exc:
            if args.debug:
                traceback.print_exc()
            print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
            return 2


def run() -> None:
    """The ``battgen`` program (the console script and ``python -m battgen.cli``): :func:`main`, then exit
    with its code.

    Before the exit, every object is frozen out of the garbage collector's reach (:func:`gc.freeze`):
    the interpreter's shutdown collects the whole heap several times, which after the 5 s grid
    (NumPy, pandas, numba and scikit-learn loaded) took ~0.4 s of a ~5.5 s command and collected
    nothing a command needs collected (its files are written and closed by then). :func:`main` itself,
    which tests call in their own process, leaves the collector alone.
    """
    code = main()
    gc.freeze()
    raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
