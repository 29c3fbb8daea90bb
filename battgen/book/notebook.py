"""What an executed chapter must look like before the book renders it.

Two concerns, both about the executed notebook (a ``nbformat`` node), never about the science:

- :func:`clean_executed`: the page a reader sees holds no trace of the machine that built it.
  papermill's injected-parameters cell is folded into the chapter's own parameters cell (so the
  notebook still says, and nbval re-runs, exactly what was executed), that cell is collapsed
  behind a toggle, papermill's metadata lose their absolute paths, and a first cell (removed from
  the site, kept in the downloaded and launched notebook) installs battgen where it is missing,
  as on Colab or Binder.
- :func:`missing_figures`: the figures cannot vanish. A code cell whose source calls a
  figure-making function must have an image among its outputs; a kernel whose matplotlib backend
  is not the inline one (``MPLBACKEND=agg`` on a headless server) draws none, and the runner and
  the Sphinx extension refuse such a chapter.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "DRAWING_CALL",
    "INLINE_BACKEND",
    "clean_executed",
    "drawing_cells",
    "figure_count",
    "install_cell_source",
    "missing_figures",
    "portable_path",
]

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""The backend every chapter kernel gets, whatever ``MPLBACKEND`` the caller has."""

DRAWING_CALL = re.compile(
    r"\b(?:plt\.(?:subplots|figure|subplot_mosaic)"
    r"|sns\.(?:relplot|catplot|displot|lmplot|pairplot|jointplot|clustermap)"
    r"|plotting\.(?:plot|draw)_\w+)\s*\("
)
"""A call that makes a new figure; a cell that makes one must show it."""

HIDE = "hide-input"  # the toggle that collapses the parameters cell
INSTALL_TAGS = ["remove-cell", "install-battgen"]


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _code(source: str) -> str:
    """The source without its comments (a commented-out call draws nothing)."""
    return "\n".join(line.split("#", 1)[0] for line in source.splitlines())


def drawing_cells(nb: Any) -> list[int]:
    """Indices of the code cells whose source calls a figure-making function (:data:`DRAWING_CALL`)."""
    return [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and DRAWING_CALL.search(_code(cell.source))]


def _has_image(cell: Any) -> bool:
    return any(any(k.startswith("image/") for k in out.get("data", {})) for out in cell.get("outputs", []))


def figure_count(nb: Any) -> int:
    """How many code cells of ``nb`` show at least one image."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code" and _has_image(cell))


def missing_figures(nb: Any) -> list[str]:
    """One line per drawing cell without an image output (empty: every figure is there)."""
    out = []
    for i in drawing_cells(nb):
        cell = nb.cells[i]
        if not _has_image(cell):
            first = next((line.strip() for line in cell.source.splitlines() if DRAWING_CALL.search(line)), "")
            out.append(f"cell {i}: `{first[:70]}` drew no figure")
    return out


def portable_path(path: str | os.PathLike | None, start: str | os.PathLike) -> str | None:
    """``path`` relative to ``start`` (the kernel's working folder), so that no page shows the machine's folders."""
    if path is None:
        return None
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
    except ValueError:  # another drive on Windows: nothing relative exists
        return str(path)


def install_cell_source(repository_url: str | None) -> str:
    """The first cell of a launched notebook: install battgen where it is missing (Colab, Binder)."""
    target = f"battgen @ git+{repository_url.rstrip('/')}.git" if repository_url else "battgen"
    return (
        "# On Colab or Binder: install battgen (and the book's tools) first; a no-op where it is installed.\n"
        "import importlib.util\n"
        "\n"
        'if importlib.util.find_spec("battgen") is None:\n'
        f'    %pip install --quiet "{target}" jupytext papermill myst-nb'
    )


def clean_executed(nb: Any, *, source: str, repository_url: str | None = None) -> Any:
    """Fold papermill's injected cell into the parameters cell, hide it, drop absolute paths (in place).

    ``source`` is the chapter's source as the repository names it (``notebooks/01_....py``).
    """
    import nbformat

    cells = nb.cells
    injected = [i for i, c in enumerate(cells) if "injected-parameters" in _tags(c)]
    params = next((i for i, c in enumerate(cells) if "parameters" in _tags(c)), None)
    if injected and params is not None:
        values = cells[injected[0]]
        body = "\n".join(line for line in values.source.splitlines() if line.strip() != "# Parameters")
        cells[params].source = "# Parameters (as this chapter was executed)\n" + body.strip()
        cells[params].outputs = values.get("outputs", [])
    for i in reversed(injected):
        del cells[i]
    if params is not None:
        tags = _tags(cells[params])
        if not {HIDE, "hide-cell", "remove-cell", "remove-input"} & set(tags):
            cells[params].metadata["tags"] = [*tags, HIDE]
    if not any("install-battgen" in _tags(c) for c in cells):
        install = nbformat.v4.new_code_cell(install_cell_source(repository_url))
        install.metadata["tags"] = list(INSTALL_TAGS)
        if nb.get("nbformat_minor", 0) >= 5:
            install["id"] = "install-battgen"  # fixed, so that re-executions give the same notebook
        else:
            install.pop("id", None)
        cells.insert(0, install)
    meta = nb.metadata.get("papermill")
    if meta is not None:
        meta["input_path"] = source
        meta["output_path"] = None
        meta.pop("parameters", None)  # the parameters cell says it; here they held absolute paths
        meta["environment_variables"] = {}
    return nb
