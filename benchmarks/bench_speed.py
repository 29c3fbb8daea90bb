"""Speed where users wait (issue 13): one table, every figure against a reference measured in the same run.

Rows (each with the machine's 1-minute load average before it and the highest seen while it ran):

- one CVAE fit of the paper's model (LMO 10 Ah case 0, 570 rows, 50 epochs) against the plain
  single-thread PyTorch loop of ``benchmarks/reference_loop.py`` on the same rows (goal: 5x faster);
  both are warmed up once (torch.optim imports ~800 modules on first use) and timed 3 times (median);
- ``battgen reproduce --battery all --pulse-width 5 --seeds 0`` (4 types x 8 cases, both phases)
  as a fresh process, start to end (median of 3, alternating with the next reference): wall time
  against the authors' released code on this machine (384 s, issue 2's measurement; TensorFlow is
  not installed here, so it is not re-run; goal 40x) and against 4 plain-loop fits timed the same
  way, as a fresh process start to end (``reference_loop.py --fits 4``: Python, torch, the rows from
  a file, 4 fits; goal: the grid within that), and its peak resident memory (goal: 400 MB). For the
  record, also the grid against 4 of the warmed-up in-process fits of the first row (a stricter
  comparison than like for like: the grid pays its process start and imports, those fits do not);
- with one other CPU-bound process started by this script (``while True: pass``, killed after each
  measurement, at most 15 minutes), the one fit, the grid, ``battgen train``, ``battgen train
  --generator cvae``, ``battgen estimate`` and ``battgen extract-features`` again: loaded time /
  quiet time (goal: at most 2);
- ``battgen train`` end to end (process start to model file written) with the default generator
  (goal 3 s) and with ``--generator cvae`` (goal 5 s), and ``battgen --help`` (goal 0.5 s);
- ``battgen estimate`` (every LMO 10 Ah pulse, 90 % intervals) and ``battgen extract-features`` (the
  two workstep files) end to end, median of 3, for the record, and again with one other busy
  process (goal: at most 2x the quiet time), so that every command that computes is timed under load;
- with ``--unit-tests``: the unit-test part of ``make test`` (``pytest -n 2 tests``), for the record;
- with ``--book``: ``make book`` (full profile: every chapter executed, then the site built) in a
  temporary clean clone of this repository (goal 8 min), and the leak-free study of chapter 06
  (5 seeds x 3 folds x 4 types x 8 cases) timed by papermill inside that run (goal 3 min);
- with ``--tests``: ``make test`` in a temporary clean clone (goal 5 min), and again in a new clean
  clone with one other busy process (goal: at most 2x the quiet time; ``--skip-load`` skips it).

The clean clones share this process's virtualenv (``.venv`` is a link to it, and the clone's
``pyproject.toml`` is dated before the virtualenv's setup stamp, so make installs nothing) and read the data from ``$BATTGEN_DATA_DIR``; ``PYTHONPATH``
points every process and chapter kernel at the clone's own package. ``make bench`` passes
``BENCH_FLAGS`` (``make bench BENCH_FLAGS="--book --tests"``); without them it takes about two minutes.

Usage: python benchmarks/bench_speed.py [--skip-load] [--unit-tests] [--book] [--tests]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

AUTHORS_GRID_S = 384.0
"""The authors' released code (TensorFlow), full 5 s grid, on this machine (issue 2's measurement)."""
_PEAK = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); " \
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
_BUSY = "import time\nend = time.time() + 900\nwhile time.time() < end:\n    pass\n"


class LoadWatch:
    """The 1-minute load average before a measurement and the highest seen during it (sampled every 0.5 s)."""

    def __enter__(self) -> "LoadWatch":
        self.before = self.during = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.during = max(self.during, os.getloadavg()[0])

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.during = max(self.during, os.getloadavg()[0])


@contextmanager
def busy_process():
    """One other CPU-bound process for the duration of the block (bounded to 15 minutes, killed after)."""
    proc = subprocess.Popen([sys.executable, "-c", _BUSY])
    try:
        time.sleep(1.0)  # let it take its core
        yield
    finally:
        proc.kill()
        proc.wait()


def command(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MB of a fresh process running ``args``."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK, *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr}")
    return elapsed, int(done.stdout.split()[-1]) / 1024


@contextmanager
def clean_clone():
    """``(clone, env)``: a temporary clone of the committed repository that shares this virtualenv, removed after."""
    data = os.environ.get("BATTGEN_DATA_DIR")
    if not data:
        raise SystemExit("--book / --tests: set BATTGEN_DATA_DIR to the PulseBat folder (the clean clone reads it)")
    root = Path(tempfile.mkdtemp(prefix="battgen-clone-"))
    try:
        clone = root / "battgen"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)
        (clone / ".venv").symlink_to(Path(sys.prefix))
        installed = Path(sys.prefix) / ".installed"  # make's setup stamp: the clone's pyproject.toml must be older
        stamp = installed.stat().st_mtime if installed.exists() else time.time()
        os.utime(clone / "pyproject.toml", (stamp - 60, stamp - 60))
        env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}  # a user's shell,
        env |= {"BATTGEN_DATA_DIR": str(Path(data).resolve()), "PYTHONPATH": str(clone)}  # not `make bench`'s
        yield clone, env
    finally:
        shutil.rmtree(root, ignore_errors=True)


def make(clone: Path, env: dict, target: str) -> tuple[float, list[str]]:
    """Wall seconds of ``make <target>`` run in ``clone`` as a user would (``cd clone && make target``: no
    ``-C``, whose ``--print-directory`` would reach the makes the tests start), and the last lines of its
    output if it failed (the whole output is in ``<clone>/make-<target>.log`` while the clone exists)."""
    t0 = time.perf_counter()
    with open(clone / f"make-{target}.log", "w") as log:
        done = subprocess.run(["make", target], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - t0
    tail = (clone / f"make-{target}.log").read_text().splitlines()[-25:] if done.returncode else []
    return elapsed, [f"make {target} FAILED:", *tail] if tail else []


def step_lines(clone: Path, target: str) -> list[str]:
    """The lines of a make log that time its steps: the runner's chapters (``...: executed in N s``,
    ``chapters ready in``), pytest's summaries (``N passed in N s``) and the build's verdict."""
    log = (clone / f"make-{target}.log").read_text().splitlines()
    marks = ("executed in", "chapters ready in", " passed", " failed", "build succeeded", "build finished")
    return [f"make {target}: {line.strip()}" for line in log if any(m in line for m in marks)]


def cell_seconds(notebook: Path, marker: str) -> float:
    """Seconds papermill recorded for the code cells of ``notebook`` whose source contains ``marker``."""
    cells = json.loads(notebook.read_text(encoding="utf8"))["cells"]
    return sum(float(c["metadata"].get("papermill", {}).get("duration") or 0.0) for c in cells
               if c["cell_type"] == "code" and marker in "".join(c["source"]))


def battgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "battgen.cli", *args]


def median_command(make_args, repeat: int = 3) -> float:
    """Median wall seconds of ``repeat`` fresh processes, each running the arguments ``make_args()`` returns."""
    return statistics.median([command(make_args())[0] for _ in range(repeat)])


def median_time(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, figure: str, value: float, unit: str, reference: str, ref_value: float | None, ratio: float | None,
            goal: str, ok: bool | None, load: LoadWatch) -> None:
        """One row; ``ok`` None: a figure for the record, without a goal."""
        self.rows.append((figure, f"{value:.2f} {unit}", reference, "" if ref_value is None else f"{ref_value:.2f} {unit}",
                          "" if ratio is None else f"{ratio:.2f}x", goal, "record" if ok is None else "pass" if ok else "FAIL",
                          f"{load.before:.2f}", f"{load.during:.2f}"))
        print(f"  ... {figure}: {value:.2f} {unit}", file=sys.stderr, flush=True)

    def print(self) -> None:
        head = ("figure", "value", "reference (same run)", "reference value", "ratio", "goal", "", "load before", "load during")
        widths = [max(len(str(r[i])) for r in [head, *self.rows]) for i in range(len(head))]
        line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        print(line(head))
        print("  ".join("-" * w for w in widths))
        for r in self.rows:
            print(line(r))


def _timed_commands(table: Table, out: str, ours, t_fit: float, t_plain: float, rows: tuple, args: argparse.Namespace) -> None:
    """The rows of fresh processes (the grid, train, --help), quiet and with one other busy process; outputs in ``out``."""

    def grid_cmd() -> list[str]:  # a new folder each time: battgen reproduce never replaces results
        return battgen("reproduce", "--battery", "all", "--pulse-width", "5", "--seeds", "0", "--out",
                       tempfile.mkdtemp(dir=out), "--no-progress")

    rows_file = Path(out) / "rows.npz"  # the plain loop's rows, so that its process imports nothing of battgen
    np.savez(rows_file, x=rows[0], c=rows[1])
    plain4 = [sys.executable, str(HERE / "reference_loop.py"), "--fits", "4", "--rows", str(rows_file)]
    grids, mems, plains = [], [], []
    with LoadWatch() as load:
        for _ in range(3):  # alternating, so that a change of load hits both
            t, mem = command(grid_cmd())
            grids.append(t)
            mems.append(mem)
            plains.append(command(plain4)[0])
    t_grid, mem_grid, t_plain4 = statistics.median(grids), max(mems), statistics.median(plains)
    table.add("5 s grid (battgen reproduce, 32 cases x 2 phases)", t_grid, "s", "authors' code (stored)", AUTHORS_GRID_S,
              AUTHORS_GRID_S / t_grid, ">= 40x faster", AUTHORS_GRID_S / t_grid >= 40, load)
    table.add("5 s grid", t_grid, "s", "4 plain-loop fits, fresh process", t_plain4, t_plain4 / t_grid,
              ">= 1x (within 4 fits)", t_grid <= t_plain4, load)
    table.add("5 s grid", t_grid, "s", "4 warm in-process fits (row 1)", 4 * t_plain, 4 * t_plain / t_grid,
              "(stricter: no start, no imports)", None, load)
    table.add("5 s grid, peak resident memory (highest of 3)", mem_grid, "MB", "goal", 400.0, None, "<= 400 MB",
              mem_grid <= 400, load)

    models = iter(range(1000))

    def train(*extra: str) -> list[str]:  # a new model file each time: battgen train never replaces one
        return battgen("train", "--battery", "LMO10", "--soc", "5", "25", "50", "--out",
                       str(Path(out) / f"model{next(models)}.pt"), "--no-progress", *extra)

    with LoadWatch() as load:
        t_train, _ = command(train())
    table.add("battgen train (default generator), end to end", t_train, "s", "goal", 3.0, None, "<= 3 s", t_train <= 3, load)
    with LoadWatch() as load:
        t_cvae, _ = command(train("--generator", "cvae"))
    table.add("battgen train --generator cvae, end to end", t_cvae, "s", "goal", 5.0, None, "<= 5 s", t_cvae <= 5, load)
    with LoadWatch() as load:
        t_help = median_command(lambda: battgen("--help"))
    table.add("battgen --help", t_help, "s", "goal", 0.5, None, "< 0.5 s", t_help < 0.5, load)

    # the other two commands that do work here (fetch is a download): no goal of their own when quiet,
    # but under load they too must stay within 2x
    from battgen.data import REGISTRY, fetch, load_pulsebat

    pulses = Path(out) / "pulses.csv"  # every LMO 10 Ah pulse at 5-50 %, estimated by the first model trained above
    load_pulsebat("LMO10").to_csv(pulses, index=False)
    workstep = Path(out) / "workstep"  # the two workstep files, verified (from $BATTGEN_DATA_DIR or the cache)
    workstep.mkdir()
    for key in (k for k in REGISTRY if k.startswith("workstep/")):
        shutil.copy(fetch(key), workstep / Path(key).name)
    outputs = iter(range(1000))

    def estimate() -> list[str]:
        return battgen("estimate", str(pulses), "--model", str(Path(out) / "model0.pt"), "--interval", "0.9",
                       "--out", str(Path(out) / f"estimates{next(outputs)}.csv"))

    def extract() -> list[str]:
        return battgen("extract-features", str(workstep), "--no-progress",
                       "--out", str(Path(out) / f"features{next(outputs)}.csv"))

    with LoadWatch() as load:
        t_estimate = median_command(estimate)
    table.add("battgen estimate (950 pulses, 90 % intervals), end to end", t_estimate, "s", "(no goal when quiet)", None,
              None, "", None, load)
    with LoadWatch() as load:
        t_extract = median_command(extract)
    table.add("battgen extract-features (2 workstep files), end to end", t_extract, "s", "(no goal when quiet)", None,
              None, "", None, load)

    if not args.skip_load:
        def under_load(figure: str, quiet: float, measure) -> None:
            """``measure()`` (wall seconds) with one other busy process, against its ``quiet`` time."""
            with busy_process(), LoadWatch() as load:
                busy = measure()
            table.add(f"{figure}, one other busy process", busy, "s", "same, quiet (above)", quiet, busy / quiet,
                      "<= 2x slower", busy <= 2 * quiet, load)

        under_load("one CVAE fit", t_fit, lambda: median_time(ours))
        under_load("5 s grid", t_grid, lambda: command(grid_cmd())[0])
        under_load("battgen train (default generator)", t_train, lambda: command(train())[0])
        under_load("battgen train --generator cvae", t_cvae, lambda: command(train("--generator", "cvae"))[0])
        under_load("battgen estimate", t_estimate, lambda: median_command(estimate))
        under_load("battgen extract-features", t_extract, lambda: median_command(extract))

    if args.unit_tests:
        with LoadWatch() as load:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "tests"], cwd=HERE.parent,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t_unit = time.perf_counter() - t0
        table.add("unit tests of make test (pytest -n 2 tests)", t_unit, "s", "goal (all of make test)", 300.0, None,
                  "", None, load)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-load", action="store_true", help="skip the measurements with a busy process")
    ap.add_argument("--unit-tests", action="store_true", help="also time the unit-test part of make test")
    ap.add_argument("--book", action="store_true", help="also time `make book` (full profile) in a clean clone (~10 min)")
    ap.add_argument("--tests", action="store_true", help="also time `make test` in a clean clone (~5 min)")
    ap.add_argument("--keep-book", metavar="DIR", help="with --book: copy the executed chapters and results/ to DIR")
    args = ap.parse_args(argv)

    from battgen.data import load_pulsebat
    from battgen.evaluation.generators import FITS, GeneratorSettings
    from battgen.evaluation.split import paper_split
    from battgen.train import fit_generators
    from reference_loop import paper_rows, plain_fit

    table = Table()
    job = FITS["paper"].job(paper_split(load_pulsebat("LMO10"), case=0, seed=0), GeneratorSettings().feature_bounds)
    x, c = paper_rows()

    def ours() -> None:
        fit_generators([job], progress=False)

    def plain() -> None:
        plain_fit(x, c)

    ours(), plain()  # warm-up: first-use imports and allocations
    with LoadWatch() as load:
        t_plain = median_time(plain)
        t_fit = median_time(ours)
    table.add(f"one CVAE fit ({len(x)} rows, 50 epochs)", t_fit, "s", "plain PyTorch loop", t_plain, t_plain / t_fit,
              ">= 5x faster", t_plain / t_fit >= 5, load)

    out = tempfile.mkdtemp(prefix="battgen-bench-")  # the runs' outputs, removed at the end
    try:
        _timed_commands(table, out, ours, t_fit, t_plain, (x, c), args)
    finally:
        shutil.rmtree(out, ignore_errors=True)

    notes = []
    if args.book:
        with clean_clone() as (clone, env), LoadWatch() as load:
            t_book, failed = make(clone, env, "book")
            notes += step_lines(clone, "book") + failed
            t_study = cell_seconds(clone / "book" / "notebooks" / "06_beyond_the_paper.ipynb", "run_leakfree(")
            if args.keep_book:  # the executed chapters and their results, for the numbers a note quotes
                for part in ("book/notebooks", "results"):
                    shutil.copytree(clone / part, Path(args.keep_book) / part, dirs_exist_ok=True)
        table.add("make book (full profile, clean clone)" + (" FAILED" if failed else ""), t_book, "s", "goal", 480.0,
                  None, "<= 8 min", t_book <= 480 and not failed, load)
        table.add("chapter 06: leak-free study (5 seeds x 3 folds x 32 cells)", t_study, "s", "goal", 180.0, None,
                  "<= 3 min", t_study <= 180, load)
    if args.tests:
        with clean_clone() as (clone, env), LoadWatch() as load:
            t_tests, failed = make(clone, env, "test")
            notes += step_lines(clone, "test") + failed
        table.add("make test (clean clone)" + (" FAILED" if failed else ""), t_tests, "s", "goal", 300.0, None,
                  "<= 5 min", t_tests <= 300 and not failed, load)
        if not args.skip_load:  # the heaviest command a developer runs, with the machine shared
            with clean_clone() as (clone, env), busy_process(), LoadWatch() as load:
                t_tests_busy, failed = make(clone, env, "test")
                notes += [f"make test, busy: {line}" for line in failed]
            table.add("make test, one other busy process" + (" FAILED" if failed else ""), t_tests_busy, "s",
                      "same, quiet (above)", t_tests, t_tests_busy / t_tests, "<= 2x slower",
                      t_tests_busy <= 2 * t_tests and not failed, load)

    print(f"\nmachine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), Python {sys.version.split()[0]}")
    table.print()
    if notes:
        print("\nthe steps (chapters run side by side):\n  " + "\n  ".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
