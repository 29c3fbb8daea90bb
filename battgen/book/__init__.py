"""The book tooling, in layers; the science modules never import it.

- :mod:`battgen.book.profiles`: what the ``smoke`` and ``full`` profiles mean (epochs, seeds,
  folds, cases, grid size), in one frozen :class:`Profile` each.
- :mod:`battgen.book.chapter`: the one-call setup of a chapter (:func:`setup_chapter`).
- :mod:`battgen.book.glue`: the one glue helper of the chapters (:func:`put`).
- :mod:`battgen.book.tables`: the one table helper of the chapters (:func:`table`).
- :mod:`battgen.book.notebook`: what an executed chapter must look like (clean, every figure there).
- :mod:`battgen.book.assets`: MathJax served from the site's own ``_static`` (offline).
- :mod:`battgen.book.cli`: ``python -m battgen.book run|list|reports|mathjax``.
- :mod:`battgen.book.runner`: executes the stale chapters with papermill
  side by side (``python -m battgen.book run --profile smoke``, called by ``make notebooks``).
- :mod:`battgen.book.sphinx`: the Sphinx extension, listed in ``_config.yml`` as ``battgen.book``
  (hence :func:`setup` here): ``jupyter-book build book/`` executes what is missing or stale.

Importing this package stays light: torch, matplotlib, papermill, myst_nb and Sphinx are
imported only where they are used.
"""

from battgen.book.chapter import ChapterContext, setup_chapter
from battgen.book.glue import and_join, counted, glue_key, glued, percent, put, put_many, readable, source_block, type_list
from battgen.book.profiles import PROFILES, Profile, profile
from battgen.book.runner import Chapter, chapters, data_fingerprint, find_root, fingerprint, run_notebooks
from battgen.book.tables import Table, table
from battgen.book.sphinx import setup
from battgen.io import package_fingerprint  # re-exported for existing callers

__all__ = [
    "PROFILES",
    "and_join",
    "counted",
    "Chapter",
    "ChapterContext",
    "Profile",
    "chapters",
    "data_fingerprint",
    "find_root",
    "fingerprint",
    "glue_key",
    "glued",
    "package_fingerprint",
    "profile",
    "percent",
    "put",
    "put_many",
    "readable",
    "run_notebooks",
    "setup",
    "setup_chapter",
    "source_block",
    "Table",
    "table",
    "type_list",
]
