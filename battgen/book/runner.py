"""The chapter runner: execute the stale chapter notebooks with papermill.

``python -m battgen.book run --profile smoke`` (called by ``make notebooks``). The chapters are
the entries ``notebooks/<name>`` of the root ``_toc.yml``; each one's source is the jupytext
py:percent file ``notebooks/<name>.py`` and its executed copy, which the book renders, is
``book/notebooks/<name>.ipynb``. A chapter is executed with papermill (parameters ``profile``,
``seeds``, ``data_dir``, ``results_dir``, ``progress``; the seeds come from
:mod:`battgen.book.profiles`) only when it is stale: when no executed copy exists, or when the
fingerprint stored in the executed copy's metadata differs from the current one, which covers
the chapter's source, the battgen package source, the data files and the parameters. A failed
chapter prints its traceback, leaves its failed notebook and a log under ``_build/reports/``,
and its (now stale) executed copy is removed so that the book cannot render an outdated
chapter; the runner goes on with the other chapters and exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from battgen.book.profiles import PROFILES
from battgen.book.profiles import profile as resolve_profile
from battgen.io import _tree_fingerprint, atomic_path, package_fingerprint

__all__ = [
    "Chapter",
    "chapters",
    "data_fingerprint",
    "executed_metadata",
    "find_root",
    "fingerprint",
    "main",
    "run_notebooks",
    "source_fingerprint",
]

NOTEBOOK_DIR = "notebooks"  # docname prefix in _toc.yml, source folder at the root, output under book/
METADATA_KEY = "battgen"
MISSING_HINT = "run `make notebooks` (or `make book`) first"


# --------------------------------------------------------------------------- chapters


@dataclass(frozen=True)
class Chapter:
    """One executed chapter of the book."""

    name: str  # "01_data_exploration"
    source: Path  # notebooks/01_data_exploration.py (jupytext py:percent)
    output: Path  # book/notebooks/01_data_exploration.ipynb (executed, rendered by the book)

    @property
    def docname(self) -> str:
        return f"{NOTEBOOK_DIR}/{self.name}"


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the nearest folder (upwards from ``start``) holding ``_toc.yml`` and ``book/``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "book").is_dir():
            return folder
    raise FileNotFoundError(f"no _toc.yml with a book/ folder beside it in {here} or its parents")


def _toc_files(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def toc_docnames(toc: str | os.PathLike) -> list[str]:
    """Every document named in a Jupyter Book ``_toc.yml``, in order, without extensions."""
    import yaml

    data = yaml.safe_load(Path(toc).read_text(encoding="utf8"))
    names = []
    for name in _toc_files(data):
        stem = name.rsplit(".", 1)[0] if name.endswith((".md", ".ipynb", ".py")) else name
        if stem not in names:
            names.append(stem)
    return names


def chapters(root: str | os.PathLike, toc: str | os.PathLike | None = None) -> list[Chapter]:
    """The executed chapters, in the order of ``_toc.yml``: its entries under ``notebooks/``."""
    root = Path(root)
    names = toc_docnames(toc or root / "_toc.yml")
    prefix = NOTEBOOK_DIR + "/"
    return [
        Chapter(name[len(prefix):], root / NOTEBOOK_DIR / f"{name[len(prefix):]}.py", root / "book" / f"{name}.ipynb")
        for name in names
        if name.startswith(prefix)
    ]


# --------------------------------------------------------------------------- fingerprints


def data_fingerprint(data_dir: str | os.PathLike | None) -> str:
    """sha256 over every file under ``data_dir`` (the PulseBat folder; a few MB), or a fixed tag without one.

    Without a data folder battgen reads hash-verified downloads whose hashes live in the package,
    so :func:`package_fingerprint` already covers them.
    """
    if not data_dir or not Path(data_dir).is_dir():
        return "registry"
    return _tree_fingerprint(Path(data_dir), "*")


def source_fingerprint(source: Path) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def inputs(chapter: Chapter, parameters: dict[str, Any], package: str, data: str) -> dict[str, Any]:
    """What an executed chapter depends on: its source, the package, the data and the parameters."""
    return {"source": source_fingerprint(chapter.source), "package": package, "data": data, "parameters": parameters}


def fingerprint(chapter: Chapter, parameters: dict[str, Any], package: str, data: str) -> str:
    """One sha256 over :func:`inputs`; stored in the executed notebook's metadata."""
    blob = json.dumps(inputs(chapter, parameters, package, data), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def stale_reason(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why an executed chapter must run again, from its stored and current :func:`inputs`."""
    if not old:
        return "not executed yet"
    changed = [k for k in ("source", "package", "data") if old.get(k) != new[k]]
    before, after = old.get("parameters", {}), new["parameters"]
    changed += [f"{k} {before.get(k)!r} -> {after[k]!r}" for k in after if before.get(k) != after[k]]
    return "changed: " + ", ".join(changed) if changed else "fingerprint differs"


def executed_metadata(path: Path) -> dict[str, Any]:
    """The ``battgen`` metadata of an executed notebook ({} if absent or unreadable)."""
    try:
        return json.loads(path.read_text(encoding="utf8")).get("metadata", {}).get(METADATA_KEY, {})
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- execution


def parameters_for(profile: str, data_dir: str | None, results_dir: Path) -> dict[str, Any]:
    """The papermill parameters of every chapter; the seeds are the profile's."""
    return {
        "profile": profile,
        "seeds": list(resolve_profile(profile).seeds),
        "data_dir": data_dir,
        "results_dir": str(results_dir),
        "progress": False,
    }


def _load_source(chapter: Chapter):
    import jupytext

    nb = jupytext.read(chapter.source, fmt="py:percent")
    if not any("parameters" in cell.metadata.get("tags", []) for cell in nb.cells if cell.cell_type == "code"):
        raise ValueError(f"{chapter.source}: no code cell tagged 'parameters' (write it as `# %% tags=[\"parameters\"]`)")
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    return nb


def _write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf8")


def _execute(chapter: Chapter, parameters: dict[str, Any], key: str, used: dict[str, Any], reports: Path,
             timeout: int | None) -> bool:
    """Execute one chapter into its output path; on failure print and keep a report, return False."""
    import nbformat
    import papermill as pm

    nb = _load_source(chapter)
    log = reports / f"{chapter.name}.log"
    failed_nb = reports / f"{chapter.name}.ipynb"  # papermill saves progress here; kept only on failure
    reports.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        executed = pm.execute_notebook(
            nb,
            str(failed_nb),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(chapter.source.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
        )
    except Exception as exc:  # PapermillExecutionError, kernel death, timeouts, bad parameters
        seconds = time.perf_counter() - start
        chapter.output.unlink(missing_ok=True)  # never leave an outdated chapter for the book
        detail = str(exc) if type(exc).__name__ == "PapermillExecutionError" else traceback.format_exc()
        text = (
            f"{chapter.name}: execution FAILED after {seconds:.1f} s (profile {parameters['profile']})\n"
            f"source: {chapter.source}\nparameters: {json.dumps(parameters)}\n{detail}\n"
        )
        log.write_text(text, encoding="utf8")
        if not failed_nb.is_file():
            nbformat.write(nb, str(failed_nb))
        print(text, file=sys.stderr)
        print(f"[battgen.book] report: {log}; partially executed notebook: {failed_nb}", file=sys.stderr)
        return False
    seconds = time.perf_counter() - start
    failed_nb.unlink(missing_ok=True)
    executed.metadata[METADATA_KEY] = {
        "fingerprint": key,
        "inputs": used,
        "source": chapter.source.name,
        "source_sha256": source_fingerprint(chapter.source),
        "profile": parameters["profile"],
        "seconds": round(seconds, 1),
    }
    _write_atomic(chapter.output, nbformat.writes(executed))
    print(f"[battgen.book] {chapter.name}: executed in {seconds:.1f} s -> {chapter.output}", flush=True)
    return True


def run_notebooks(
    profile: str,
    *,
    root: str | os.PathLike | None = None,
    data_dir: str | None = None,
    results_dir: str | os.PathLike | None = None,
    only: Sequence[str] = (),
    force: bool = False,
    timeout: int | None = None,
) -> int:
    """Execute the stale chapters; return 0 if every chapter is executed and fresh, 1 otherwise."""
    root = find_root(root)
    data_dir = data_dir if data_dir is not None else os.environ.get("BATTGEN_DATA_DIR") or None
    if data_dir:
        data_dir = str(Path(data_dir).expanduser().resolve())
    results = Path(results_dir).resolve() if results_dir else root / "results" / profile
    parameters = parameters_for(profile, data_dir, results)
    reports = root / "_build" / "reports"
    selected = chapters(root)
    unknown = set(only) - {c.name for c in selected}
    if unknown:
        raise SystemExit(f"not chapters of _toc.yml: {sorted(unknown)}; known: {[c.name for c in selected]}")
    if only:
        selected = [c for c in selected if c.name in only]
    missing = [c for c in selected if not c.source.is_file()]
    for chapter in missing:
        chapter.output.unlink(missing_ok=True)
        print(
            f"[battgen.book] {chapter.name}: source {chapter.source.relative_to(root)} does not exist "
            f"(listed in _toc.yml as {chapter.docname})",
            file=sys.stderr,
        )
    package, data = package_fingerprint(), data_fingerprint(data_dir)
    failed = [c.name for c in missing]
    total = time.perf_counter()
    for chapter in selected:
        if chapter in missing:
            continue
        key, used = fingerprint(chapter, parameters, package, data), inputs(chapter, parameters, package, data)
        meta = executed_metadata(chapter.output) if chapter.output.is_file() else {}
        if not force and meta.get("fingerprint") == key:
            print(f"[battgen.book] {chapter.name}: up to date ({profile})", flush=True)
            continue
        reason = "forced" if force else stale_reason(meta.get("inputs", {}), used)
        print(f"[battgen.book] {chapter.name}: executing ({profile}; {reason}) ...", flush=True)
        if not _execute(chapter, parameters, key, used, reports, timeout):
            failed.append(chapter.name)
    print(f"[battgen.book] {len(selected) - len(failed)}/{len(selected)} chapters ready in "
          f"{time.perf_counter() - total:.1f} s (profile {profile}, results in {results})", flush=True)
    if failed:
        print(f"[battgen.book] FAILED: {', '.join(failed)} (reports in {reports})", file=sys.stderr)
        return 1
    return 0


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
    parser = argparse.ArgumentParser(prog="python -m battgen.book", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the stale chapter notebooks into book/notebooks/")
    run.add_argument("--profile", choices=sorted(PROFILES), default="full")
    run.add_argument("--data-dir", default=None, help="PulseBat folder (default: $BATTGEN_DATA_DIR)")
    run.add_argument("--results-dir", default=None, help="where chapters write results (default: results/<profile>/)")
    run.add_argument("--only", nargs="*", default=[], metavar="NAME", help="chapters to consider, e.g. 01_data_exploration")
    run.add_argument("--force", action="store_true", help="execute even if up to date")
    run.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    sub.add_parser("list", help="list the chapters and whether each executed copy exists")
    sub.add_parser("reports", help="print the execution reports of failed chapters")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_notebooks(args.profile, data_dir=args.data_dir, results_dir=args.results_dir,
                             only=args.only, force=args.force, timeout=args.timeout)
    if args.command == "reports":
        return print_reports()
    root = find_root()
    for chapter in chapters(root):
        meta = executed_metadata(chapter.output)
        state = f"executed ({meta.get('profile', '?')}, {meta.get('seconds', '?')} s)" if chapter.output.is_file() else "not executed"
        print(f"{chapter.name:32s} source={'yes' if chapter.source.is_file() else 'MISSING'}  {state}")
    return 0
