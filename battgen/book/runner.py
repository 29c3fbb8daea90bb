"""The chapter runner: execute the stale chapter notebooks with papermill, side by side.

``python -m battgen.book run --profile smoke`` (called by ``make notebooks``, and by the Sphinx
extension when ``jupyter-book build book/`` finds a chapter missing or stale). The chapters are
the entries ``notebooks/<name>`` of the root ``_toc.yml``; each one's source is the jupytext
py:percent file ``notebooks/<name>.py`` and its executed copy, which the book renders, is
``book/notebooks/<name>.ipynb``. A chapter is executed with papermill (parameters ``profile``,
``seeds``, ``data_dir``, ``results_dir``, ``progress``; the seeds come from
:mod:`battgen.book.profiles`; ``data_dir`` is None when the folder comes from ``$BATTGEN_DATA_DIR``,
which the kernels inherit; paths are relative to the kernel's folder ``book/notebooks/``) only
when it is stale: when no executed copy exists, or when the fingerprint stored in the executed
copy's metadata differs from the current one, which covers the chapter's source, the battgen
package source, the data files and the parameters.

The chapters do not depend on each other, so ``--jobs`` of them (default: one per core) run at
the same time, each in its own kernel on one BLAS thread, the longest first (as long as each
took last time). Every kernel gets the inline matplotlib backend whatever ``MPLBACKEND`` says,
and a chapter whose drawing cells show no figure fails (:mod:`battgen.book.notebook`), as does
one that raises. A failed chapter prints its traceback, leaves its failed notebook and a log under
``_build/reports/``, and its (now stale) executed copy is removed so that the book cannot render
an outdated chapter; the runner goes on with the other chapters and exits 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from battgen.book.notebook import INLINE_BACKEND, clean_executed, missing_figures, portable_path
from battgen.book.profiles import profile as resolve_profile
from battgen.io import _tree_fingerprint, atomic_path, package_fingerprint

__all__ = [
    "Chapter",
    "chapters",
    "data_fingerprint",
    "executed_metadata",
    "find_root",
    "fingerprint",
    "kernel_environment",
    "repository_url",
    "run_notebooks",
    "source_fingerprint",
]

NOTEBOOK_DIR = "notebooks"  # docname prefix in _toc.yml, source folder at the root, output under book/
METADATA_KEY = "battgen"
MISSING_HINT = "run `make notebooks` (or `make book`) first"
KERNEL_DIR = Path("book") / NOTEBOOK_DIR  # every kernel's working folder (beside the executed copies)
KERNEL_ENV = {"MPLBACKEND": INLINE_BACKEND, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""What every chapter kernel's environment says, whatever the caller's: figures inline, one thread."""
_PRINT = threading.Lock()


def _say(message: str, *, error: bool = False) -> None:
    with _PRINT:
        print(message, file=sys.stderr if error else sys.stdout, flush=True)


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


def parameters_for(profile: str, data_dir: str | None, results_dir: Path, workdir: str | os.PathLike | None = None
                   ) -> dict[str, Any]:
    """The papermill parameters of every chapter; the seeds are the profile's.

    With ``workdir`` (the kernel's working folder) the paths are given relative to it, so that
    neither the executed notebooks nor the pages show the building machine's folders.
    """
    if workdir is not None:
        data_dir, results_dir = portable_path(data_dir, workdir), portable_path(results_dir, workdir)
    return {
        "profile": profile,
        "seeds": list(resolve_profile(profile).seeds),
        "data_dir": data_dir,
        "results_dir": str(results_dir),
        "progress": False,
    }


def repository_url(root: str | os.PathLike) -> str | None:
    """``repository.url`` of the root ``_config.yml``: the one place the repository's address lives."""
    import yaml

    try:
        config = yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf8")) or {}
    except OSError:
        return None
    url = (config.get("repository") or {}).get("url")
    return str(url) if url else None


@contextmanager
def kernel_environment(extra: dict[str, str] | None = None) -> Iterator[None]:
    """Set :data:`KERNEL_ENV` (and ``extra``) in ``os.environ`` while kernels start; restore it after.

    The kernels inherit this process's environment, so this is what makes ``MPLBACKEND=agg`` in
    a caller's shell harmless.
    """
    values = {**KERNEL_ENV, **(extra or {})}
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def _fail(chapter: Chapter, parameters: dict[str, Any], reports: Path, seconds: float, detail: str, nb: Any) -> bool:
    """Report a failed chapter: log and notebook under ``reports``, executed copy removed."""
    import nbformat

    chapter.output.unlink(missing_ok=True)  # never leave an outdated chapter for the book
    log, failed_nb = reports / f"{chapter.name}.log", reports / f"{chapter.name}.ipynb"
    text = (
        f"{chapter.name}: execution FAILED after {seconds:.1f} s (profile {parameters['profile']})\n"
        f"source: {chapter.source}\nparameters: {json.dumps(parameters)}\n{detail}\n"
    )
    log.write_text(text, encoding="utf8")
    if nb is not None:
        nbformat.write(nb, str(failed_nb))
    _say(text + f"[battgen.book] report: {log}; partially executed notebook: {failed_nb}", error=True)
    return False


def _execute(chapter: Chapter, parameters: dict[str, Any], key: str, used: dict[str, Any], reports: Path,
             timeout: int | None, root: Path) -> bool:
    """Execute one chapter into its output path; on failure print and keep a report, return False."""
    import nbformat
    import papermill as pm

    nb = _load_source(chapter)
    failed_nb = reports / f"{chapter.name}.ipynb"  # papermill saves progress here; kept only on failure
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"{chapter.name}.log").unlink(missing_ok=True)
    chapter.output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        executed = pm.execute_notebook(
            nb,
            str(failed_nb),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(chapter.output.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
        )
    except Exception as exc:  # PapermillExecutionError, kernel death, timeouts, bad parameters
        detail = str(exc) if type(exc).__name__ == "PapermillExecutionError" else traceback.format_exc()
        return _fail(chapter, parameters, reports, time.perf_counter() - start, detail,
                     None if failed_nb.is_file() else nb)
    seconds = time.perf_counter() - start
    source = chapter.source.relative_to(root).as_posix() if chapter.source.is_relative_to(root) else chapter.source.name
    clean_executed(executed, source=source, repository_url=repository_url(root))
    missing = missing_figures(executed)
    if missing:
        return _fail(chapter, parameters, reports, seconds,
                     "figures missing (the kernel's matplotlib backend was not the inline one?):\n  "
                     + "\n  ".join(missing), executed)
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
    _say(f"[battgen.book] {chapter.name}: executed in {seconds:.1f} s -> {chapter.output.relative_to(root)}")
    return True


def longest_first(selected: Sequence[Chapter]) -> list[Chapter]:
    """The chapters in the order to start them: by the seconds each took last time, longest first.

    A chapter never executed comes first, the later ones in the book first (they are the longer ones).
    """
    def last_seconds(chapter: Chapter) -> float:
        seconds = executed_metadata(chapter.output).get("seconds")
        return float("inf") if seconds is None else float(seconds)

    order = {c.name: i for i, c in enumerate(selected)}
    return sorted(selected, key=lambda c: (-last_seconds(c), -order[c.name]))


def default_jobs() -> int:
    """Chapters executed at once: ``$BATTGEN_BOOK_JOBS``, else one per core."""
    value = os.environ.get("BATTGEN_BOOK_JOBS")
    return max(1, int(value)) if value else max(1, os.cpu_count() or 1)


def run_notebooks(
    profile: str,
    *,
    root: str | os.PathLike | None = None,
    data_dir: str | None = None,
    results_dir: str | os.PathLike | None = None,
    only: Sequence[str] = (),
    force: bool = False,
    timeout: int | None = None,
    jobs: int | None = None,
) -> int:
    """Execute the stale chapters, ``jobs`` at a time; return 0 if every chapter is executed and fresh, 1 otherwise."""
    root = find_root(root)
    from_env = os.environ.get("BATTGEN_DATA_DIR") or None
    data_dir = data_dir if data_dir is not None else from_env
    if data_dir:
        data_dir = str(Path(data_dir).expanduser().resolve())
    # The folder named by $BATTGEN_DATA_DIR reaches the kernels through their environment, so the
    # parameters say `data_dir = None` (the chapters' default) and no page names the machine's folder.
    shown_data_dir = None if from_env and data_dir == str(Path(from_env).expanduser().resolve()) else data_dir
    results = Path(results_dir).resolve() if results_dir else root / "results" / profile
    parameters = parameters_for(profile, shown_data_dir, results, workdir=root / KERNEL_DIR)
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
        _say(f"[battgen.book] {chapter.name}: source {chapter.source.relative_to(root)} does not exist "
             f"(listed in _toc.yml as {chapter.docname})", error=True)
    package, data = package_fingerprint(), data_fingerprint(data_dir)
    failed = [c.name for c in missing]
    todo = []
    for chapter in selected:
        if chapter in missing:
            continue
        key, used = fingerprint(chapter, parameters, package, data), inputs(chapter, parameters, package, data)
        meta = executed_metadata(chapter.output) if chapter.output.is_file() else {}
        if not force and meta.get("fingerprint") == key:
            _say(f"[battgen.book] {chapter.name}: up to date ({profile})")
            continue
        todo.append((chapter, key, used, "forced" if force else stale_reason(meta.get("inputs", {}), used)))
    jobs = max(1, min(jobs or default_jobs(), len(todo) or 1))
    total = time.perf_counter()
    reasons = {c.name: (c, key, used, reason) for c, key, used, reason in todo}

    def run(chapter: Chapter) -> tuple[str, bool]:
        _, key, used, reason = reasons[chapter.name]
        _say(f"[battgen.book] {chapter.name}: executing ({profile}; {reason}) ...")
        return chapter.name, _execute(chapter, parameters, key, used, reports, timeout, root)

    if todo:
        _say(f"[battgen.book] {len(todo)} chapter(s) to execute, {jobs} at a time")
    with kernel_environment(), ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, ok in pool.map(run, longest_first([c for c, *_ in todo])):
            if not ok:
                failed.append(name)
    _say(f"[battgen.book] {len(selected) - len(failed)}/{len(selected)} chapters ready in "
         f"{time.perf_counter() - total:.1f} s (profile {profile}, results in {portable_path(results, root)})")
    if failed:
        _say(f"[battgen.book] FAILED: {', '.join(failed)} (reports in {reports})", error=True)
        return 1
    return 0
