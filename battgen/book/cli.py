"""``python -m battgen.book run|list|reports|mathjax``: the command line of the book tooling."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from battgen.book.profiles import PROFILES
from battgen.book.runner import chapters, executed_metadata, find_root, run_notebooks

__all__ = ["main", "print_reports"]


def print_reports(root: str | os.PathLike | None = None) -> int:
    """Print the execution reports: papermill failures and Jupyter Book's ``reports/*.log``."""
    root = find_root(root)
    logs = sorted((root / "_build" / "reports").glob("*.log")) + sorted((root / "_build" / "html" / "reports").glob("*.log"))
    for log in logs:
        print(f"===== {log.relative_to(root)} =====\n{log.read_text(encoding='utf8', errors='replace')}")
    if not logs:
        print("[battgen.book] no execution reports (no chapter failed to execute)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m battgen.book", description="Execute and inspect the chapters of the battgen book.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the stale chapter notebooks into book/notebooks/")
    run.add_argument("--profile", choices=sorted(PROFILES), default="full")
    run.add_argument("--data-dir", default=None, help="PulseBat folder (default: $BATTGEN_DATA_DIR)")
    run.add_argument("--results-dir", default=None, help="where chapters write results (default: results/<profile>/)")
    run.add_argument("--only", nargs="*", default=[], metavar="NAME", help="chapters to consider, e.g. 01_data_exploration")
    run.add_argument("--force", action="store_true", help="execute even if up to date")
    run.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    run.add_argument("--jobs", type=int, default=None,
                     help="chapters executed at once (default: $BATTGEN_BOOK_JOBS, else one per core)")
    sub.add_parser("list", help="list the chapters and whether each executed copy exists")
    sub.add_parser("reports", help="print the execution reports of failed chapters")
    sub.add_parser("mathjax", help="install MathJax from the npm registry (the site serves it offline)")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_notebooks(args.profile, data_dir=args.data_dir, results_dir=args.results_dir,
                             only=args.only, force=args.force, timeout=args.timeout, jobs=args.jobs)
    if args.command == "reports":
        return print_reports()
    if args.command == "mathjax":
        from battgen.book.assets import MathJaxMissing, install_mathjax

        try:
            print(f"[battgen.book] MathJax: {install_mathjax()}")
        except MathJaxMissing as exc:
            print(f"battgen: {exc}", file=sys.stderr)
            return 2
        return 0
    root = find_root()
    for chapter in chapters(root):
        meta = executed_metadata(chapter.output)
        state = f"executed ({meta.get('profile', '?')}, {meta.get('seconds', '?')} s)" if chapter.output.is_file() else "not executed"
        print(f"{chapter.name:32s} source={'yes' if chapter.source.is_file() else 'MISSING'}  {state}")
    return 0
