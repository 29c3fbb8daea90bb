"""The Sphinx extension of the book (``battgen.book`` in ``_config.yml``, ``sphinx.extra_extensions``).

A plain ``jupyter-book build book/`` stops with an error that says to run ``make notebooks``
when an executed chapter is missing, instead of rendering a book with empty chapters; it warns
(an error under ``-W``) when a chapter's source changed after it was executed; and it re-writes
the non-notebook pages whenever a notebook changed, so numbers glued from the notebooks into
``intro.md`` are never stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from battgen.book.runner import NOTEBOOK_DIR, chapters, executed_metadata, source_fingerprint

__all__ = ["setup"]


def _toc_path(app) -> Path:
    toc = Path(app.config.external_toc_path)
    return toc if toc.is_absolute() else Path(app.srcdir) / toc


def _require_executed(app, config) -> None:
    from sphinx.util import logging as sphinx_logging

    srcdir = Path(app.srcdir)
    root = srcdir.parent
    expected = chapters(root, _toc_path(app))
    missing = [c for c in expected if not (srcdir / f"{c.docname}.ipynb").is_file()]
    if missing:
        reports = root / "_build" / "reports"
        names = "\n".join(
            f"  book/{c.docname}.ipynb"
            + (f"  (its last execution failed: _build/reports/{c.name}.log)" if (reports / f"{c.name}.log").is_file() else "")
            for c in missing
        )
        rule = "=" * 79
        print(
            f"\n{rule}\nbattgen: the book renders executed notebooks only, and these are missing:\n{names}\n\n"
            "  Run `make notebooks` first: it executes the chapters into book/notebooks/\n"
            "  (`make notebooks PROFILE=smoke` for a quick run; `make book` does everything),\n"
            "  then build again.\n"
            f"{rule}",
            file=sys.stderr,
            flush=True,
        )
        # SystemExit, not a Sphinx error: Jupyter Book would bury the message under two tracebacks.
        raise SystemExit(2)
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


def _rewrite_glue_pages(app, env, added, changed, removed) -> list[str]:
    """When a notebook changed, also re-read the pages (intro.md) that paste numbers glued in it."""
    if not any(d.startswith(NOTEBOOK_DIR + "/") for d in (*added, *changed, *removed)):
        return []
    return sorted(d for d in env.found_docs if not d.startswith(NOTEBOOK_DIR + "/"))


def setup(app) -> dict[str, Any]:
    app.connect("config-inited", _require_executed, priority=100)
    app.connect("env-get-outdated", _rewrite_glue_pages)
    from battgen._version import __version__

    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
