"""The Sphinx extension of the book (``battgen.book`` in ``_config.yml``, ``sphinx.extra_extensions``).

``jupyter-book build book/`` alone builds the complete book:

- **Chapters.** Before reading anything it executes the missing or stale chapters with the runner
  (:func:`battgen.book.runner.run_notebooks`, chapters side by side, progress per chapter), with
  the profile of ``$BATTGEN_PROFILE`` (``full`` by default, ``smoke`` for a quick build). With
  ``BATTGEN_BOOK_EXECUTE=0`` it executes nothing: a missing chapter stops the build with a message
  that says to run ``make notebooks``, a stale one is a warning (an error under ``-W``).
- **Figures.** The build stops when an executed chapter shows fewer figures than its source draws
  (:func:`battgen.book.notebook.missing_figures`).
- **Offline.** MathJax is served from the site's ``_static/mathjax`` (:mod:`battgen.book.assets`).
- **Pages.** Each script is loaded once; each chapter's download menu offers its jupytext ``.py`` source beside the ``.ipynb``.
- **Glue.** The non-notebook pages are re-read whenever a notebook changed, so numbers glued from
  the notebooks into ``intro.md`` are never stale.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from battgen.book.runner import NOTEBOOK_DIR, chapters, executed_metadata, source_fingerprint

__all__ = ["setup"]

RULE = "=" * 79


def _toc_path(app) -> Path:
    toc = Path(app.config.external_toc_path)
    return toc if toc.is_absolute() else Path(app.srcdir) / toc


def _stop(message: str) -> None:
    # SystemExit, not a Sphinx error: Jupyter Book would bury the message under two tracebacks.
    print(f"\n{RULE}\nbattgen: {message}\n{RULE}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _execute_chapters(root: Path, expected) -> None:
    from battgen.book.runner import run_notebooks

    profile = os.environ.get("BATTGEN_PROFILE") or "full"
    print(f"[battgen.book] executing the missing or stale chapters (profile {profile}; "
          "BATTGEN_PROFILE=smoke for a quick build, BATTGEN_BOOK_EXECUTE=0 to execute nothing)", flush=True)
    if run_notebooks(profile, root=root, only=[c.name for c in expected]) != 0:
        _stop(f"a chapter failed to execute (profile {profile}); its report is in _build/reports/\n"
              "  (`python -m battgen.book reports` prints it). Fix it, then build again.")


def _require_executed(root: Path, srcdir: Path, expected) -> None:
    from sphinx.util import logging as sphinx_logging

    missing = [c for c in expected if not (srcdir / f"{c.docname}.ipynb").is_file()]
    if missing:
        reports = root / "_build" / "reports"
        names = "\n".join(
            f"  book/{c.docname}.ipynb"
            + (f"  (its last execution failed: _build/reports/{c.name}.log)" if (reports / f"{c.name}.log").is_file() else "")
            for c in missing
        )
        _stop("the book renders executed notebooks only, and these are missing:\n"
              f"{names}\n\n  Run `make notebooks` first (or build without BATTGEN_BOOK_EXECUTE=0, which\n"
              "  executes them), then build again.")
    logger = sphinx_logging.getLogger(__name__)
    for chapter in expected:
        meta = executed_metadata(srcdir / f"{chapter.docname}.ipynb")
        if chapter.source.is_file() and meta.get("source_sha256") != source_fingerprint(chapter.source):
            logger.warning(
                f"{chapter.docname}.ipynb is stale: {chapter.source.relative_to(root)} changed after it was "
                f"executed; run `make notebooks` [battgen.stale]",
                type="battgen",
                subtype="stale",
            )


def _check_figures(srcdir: Path, expected) -> None:
    import nbformat

    from battgen.book.notebook import missing_figures

    problems = []
    for chapter in expected:
        path = srcdir / f"{chapter.docname}.ipynb"
        lost = missing_figures(nbformat.read(str(path), as_version=4)) if path.is_file() else []
        problems += [f"  book/{chapter.docname}.ipynb, {line}" for line in lost]
    if problems:
        _stop("executed chapters show fewer figures than their sources draw:\n" + "\n".join(problems)
              + "\n\n  Execute them again with `make notebooks` (the runner gives every kernel the inline"
              "\n  backend; a notebook executed elsewhere with MPLBACKEND=agg has no figures).")


def _prepare(app, config) -> None:
    from battgen.book.assets import MATHJAX_ENTRY, MathJaxMissing, install_mathjax

    srcdir = Path(app.srcdir)
    root = srcdir.parent
    expected = chapters(root, _toc_path(app))
    if os.environ.get("BATTGEN_BOOK_EXECUTE", "1") != "0":
        _execute_chapters(root, expected)
    _require_executed(root, srcdir, expected)
    _check_figures(srcdir, expected)
    try:
        install_mathjax()  # before the build, not after it: the site cannot render formulas offline without it
    except MathJaxMissing as exc:
        _stop(str(exc))
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"  # relative to _static: served by the site itself


def _copy_assets(app, exception) -> None:
    """Copy MathJax into ``_static`` and each chapter's jupytext source into ``_sources``."""
    if exception is not None or app.builder.format != "html":
        return
    from battgen.book.assets import MathJaxMissing, copy_mathjax, install_mathjax

    out = Path(app.outdir)
    try:
        copy_mathjax(install_mathjax(), out / "_static")
    except MathJaxMissing as exc:
        _stop(str(exc))
    root = Path(app.srcdir).parent
    for chapter in chapters(root, _toc_path(app)):
        if chapter.source.is_file():
            target = out / "_sources" / f"{chapter.docname}.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(chapter.source, target)


def _once(scripts: list) -> list:
    """``scripts`` without repeats (the same file, or the same inline body, once)."""
    seen, out = set(), []
    for script in scripts:
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            out.append(script)
    return out


def _page_context(app, pagename, templatename, context, doctree) -> None:
    """Load each script once (sphinx-thebe's config is added twice and its second ``const`` is a
    console error), and offer a chapter's jupytext source (``.py``) in its download menu."""
    if "script_files" in context:
        context["script_files"] = _once(context["script_files"])
    # A first visit (empty localStorage) otherwise logs "Got invalid theme mode" as a console error.
    context["default_mode"] = context.get("default_mode") or "light"
    if not pagename.startswith(NOTEBOOK_DIR + "/"):
        return
    for button in context.get("header_buttons", []):
        if button.get("label") == "download-buttons":
            button["buttons"].insert(1, {
                "type": "link",
                "url": f"{context['pathto']('_sources', 1)}/{pagename}.py",
                "text": ".py",
                "icon": "fas fa-file-code",
                "tooltip": "Download the chapter's source (jupytext py:percent; `jupytext --to ipynb` makes a notebook)",
                "label": "download-jupytext-button",
            })


def _rewrite_glue_pages(app, env, added, changed, removed) -> list[str]:
    """When a notebook changed, also re-read the pages (intro.md) that paste numbers glued in it."""
    if not any(d.startswith(NOTEBOOK_DIR + "/") for d in (*added, *changed, *removed)):
        return []
    return sorted(d for d in env.found_docs if not d.startswith(NOTEBOOK_DIR + "/"))


def setup(app) -> dict[str, Any]:
    app.connect("config-inited", _prepare, priority=100)
    app.connect("env-get-outdated", _rewrite_glue_pages)
    app.connect("html-page-context", _page_context, priority=502)  # after the theme's buttons (501)
    app.connect("build-finished", _copy_assets)
    from battgen._version import __version__

    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
