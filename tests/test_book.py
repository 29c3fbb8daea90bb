"""The built site (_build/html): the intro and every chapter of _toc.yml, with their figures.

The site checks are marked ``book``: they run with ``--book`` after ``make notebooks`` and the
book build (``make test`` does both first), and a missing site or page is a failure, never a
skip. The checks of the chapters' jupytext sources (conventions) need no build and always run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from battgen.book import chapters

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "_build" / "html"
CHAPTERS = chapters(REPO)


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "intro.html").is_file():
        pytest.fail(f"no built site in {SITE}: run `make notebooks` and `jupyter-book build book/` "
                    "(or `make book`, or `make test`) first", pytrace=False)
    return SITE


def _page(site: Path, name: str) -> BeautifulSoup:
    path = site / f"{name}.html"
    if not path.is_file():
        pytest.fail(f"{path.relative_to(REPO)} was not built", pytrace=False)
    return BeautifulSoup(path.read_text(encoding="utf8"), "html.parser")


def _content(page: BeautifulSoup):
    return page.find("article") or page.find("main") or page


def _images(page: BeautifulSoup, html: Path) -> list[Path]:
    return [(html.parent / img["src"]).resolve() for img in _content(page).find_all("img") if img.get("src")]


def _figures_in_notebook(path: Path) -> int:
    nb = json.loads(path.read_text(encoding="utf8"))
    return sum(
        1
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
        if any(k.startswith("image/") for k in out.get("data", {}))
    )


def test_the_toc_lists_the_chapters():
    assert [c.name[:2] for c in CHAPTERS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.book
def test_intro_page_with_glued_results(site):
    page = _page(site, "intro")
    assert "Tao et al." in page.get_text()
    summary = page.find(id="results-summary")
    assert summary is not None, "intro.html has no 'Results summary' section"
    pasted = summary.find_all(class_="pasted-text")
    assert len(pasted) >= 5, "the results summary should paste its numbers with glue"
    assert all(p.get_text(strip=True) for p in pasted)
    links = {a["href"].split("#")[0] for a in _content(page).find_all("a", href=True)}
    assert {f"{c.docname}.html" for c in CHAPTERS} <= links, "the intro links every chapter"


@pytest.mark.book
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])
def test_chapter_page_with_its_figures(site, chapter):
    html = site / f"{chapter.docname}.html"
    page = _page(site, chapter.docname)
    assert page.find("h1") is not None, f"{html.name} has no title"
    images = _images(page, html)
    for image in images:
        assert image.is_file(), f"{html.name}: image {image} does not exist"
        assert image.stat().st_size > 0, f"{html.name}: image {image} is empty"
    executed = REPO / "book" / f"{chapter.docname}.ipynb"
    expected = _figures_in_notebook(executed)
    assert len(images) >= expected, f"{html.name}: {len(images)} images, but the notebook displays {expected} figures"


@pytest.mark.book
def test_data_chapter_draws_its_figures(site):
    page = _page(site, "notebooks/01_data_exploration")
    assert len(_images(page, site / "notebooks" / "01_data_exploration.html")) >= 5


@pytest.mark.book
def test_references_page_has_the_bibliography(site):
    text = _page(site, "references").get_text(" ")
    for needle in ("Generative learning assisted", "Pulse Voltage Response", "Kingma", "Sohn", "Vaswani"):
        assert needle in text, f"references.html lacks {needle!r}"


# --------------------------------------------------------------------------- notebook sources
# These read the jupytext sources only (no build needed), so they are not marked `book`.

PARAMETERS = ("profile", "seeds", "data_dir", "results_dir", "progress")


def _source(chapter):
    import jupytext

    if not chapter.source.is_file():
        pytest.fail(f"{chapter.source.relative_to(REPO)} is listed in _toc.yml but does not exist", pytrace=False)
    return jupytext.read(chapter.source, fmt="py:percent")


def _headings(nb) -> list[tuple[int, str]]:
    import re

    out = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        fence = False
        for line in cell.source.splitlines():
            if line.lstrip().startswith(("```", "~~~", ":::")):
                fence = not fence
            m = None if fence else re.match(r"^(#{1,6})\s+(.*\S)", line)
            if m:
                out.append((len(m.group(1)), m.group(2)))
    return out


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])
def test_notebook_follows_the_chapter_conventions(chapter):
    nb = _source(chapter)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    for name in PARAMETERS:
        assert any(line.split("=")[0].strip() == name for line in code[0].source.splitlines()), \
            f"the parameters cell lacks {name!r}"
    headings = _headings(nb)
    assert [h for h in headings if h[0] == 1] == headings[:1], "exactly one '#' title, before any other heading"
    levels = [level for level, _ in headings]
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), f"skipped heading level in {headings}"
    sections = [text for level, text in headings if level == 2]
    assert sections[:2] == ["Overview", "Setup"] and sections[-1] == "Summary", \
        f"## sections must start with Overview, Setup and end with Summary, got {sections}"
