"""The built site (_build/html) as a reader gets it: clean pages, offline assets, conveniences.

Marked ``book``: run with ``--book`` after the book build (``make test`` builds first); a missing
site is a failure, never a skip. The real-browser checks are in tests/test_site_browser.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from battgen.book import chapters

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "_build" / "html"
CHAPTERS = chapters(REPO)
VISIBILITY = ("hide-input", "hide-output", "hide-cell", "remove-input", "remove-output", "remove-cell", "teach")
ADOPTING: dict[str, str] = {}

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def pages() -> dict[str, Path]:
    """Every HTML page of the site, by its path relative to the site."""
    if not (SITE / "intro.html").is_file():
        pytest.fail(f"no built site in {SITE}: run `jupyter-book build book/` (or `make book`, `make test`) first",
                    pytrace=False)
    return {p.relative_to(SITE).as_posix(): p for p in sorted(SITE.rglob("*.html"))}


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf8"), "html.parser")


def _chapter_params():
    return [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(reason=ADOPTING[c.name], strict=False)]
                         if c.name in ADOPTING else []) for c in CHAPTERS]


def machine_paths() -> list[str]:
    """Folders of the building machine that must never appear on a page."""
    candidates = {str(REPO), str(REPO.parent), "/work/", "/root/", "/home/", "/tmp/", str(Path.home()) + "/"}
    if os.environ.get("BATTGEN_DATA_DIR"):
        candidates.add(str(Path(os.environ["BATTGEN_DATA_DIR"]).resolve()))
    return sorted(c for c in candidates if len(c) > 1)


def test_no_page_shows_a_path_of_the_building_machine(pages):
    needles = machine_paths()
    found = []
    for name, path in pages.items():
        text = path.read_text(encoding="utf8")
        found += [f"{name}: {needle!r} near {text[max(0, i - 60):i + 60]!r}"
                  for needle in needles for i in [text.find(needle)] if i >= 0]
    assert not found, "absolute paths in the site:\n" + "\n".join(found[:20])


def test_no_downloadable_notebook_holds_a_path_of_the_building_machine():
    sources = sorted((SITE / "_sources").rglob("*.ipynb")) + sorted((SITE / "_sources").rglob("*.py"))
    assert sources, "the site offers no notebook for download"
    needles = machine_paths()
    bad = [f"{p.name}: {n}" for p in sources for n in needles if n in p.read_text(encoding="utf8")]
    assert not bad, bad


@pytest.mark.parametrize("chapter", _chapter_params())
def test_chapter_pages_show_prose_not_plumbing(pages, chapter):
    page = _soup(pages[f"{chapter.docname}.html"])
    cells = page.select("div.cell")
    assert cells, "no executed cells on the page"
    assert not page.select(".tag_injected-parameters"), "papermill's injected-parameters cell is on the page"
    assert not page.select(".tag_install-battgen"), "the install cell is for Colab/Binder, not for the page"
    params = page.select("div.cell.tag_parameters")
    assert len(params) == 1, "exactly one parameters cell"
    assert "tag_hide-input" in params[0]["class"], "the parameters cell is folded behind a toggle"
    shown = [c for c in cells if not any(f"tag_{t}" in c["class"] for t in VISIBILITY) and "tag_parameters" not in c["class"]]
    assert not shown, f"{len(shown)} code cells with no visibility tag"
    raw = [t for t in page.select("table.dataframe") if not t.find_parent(class_="battgen-table")]
    assert not raw, f"{len(raw)} raw pandas tables (use battgen.book.table)"
    for box in page.select("div.battgen-table"):
        assert box.find("caption") and box.find("caption").get_text(strip=True), "every table has a caption"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])
def test_chapter_pages_open_with_an_overview_and_close_with_a_glued_summary(pages, chapter):
    page = _soup(pages[f"{chapter.docname}.html"])
    overview, summary = page.find(id="overview"), page.find(id="summary")
    assert overview is not None and summary is not None
    assert summary.select(".pasted-text"), "the summary pastes computed numbers"


ROLE = re.compile(r"\{(glue|glue:[a-z]+|numref|ref|doc|eq|cite[a-z:]*|download|term|math)\}")
"""A MyST role as written in the source: on a page it means the role was not parsed (inside backticks, say)."""


def test_no_page_shows_myst_markup_instead_of_what_it_stands_for(pages):
    found = []
    for name, path in pages.items():
        page = _soup(path)
        for code in page.select("div.cell, div.highlight, pre"):  # code as written is allowed to show roles
            code.decompose()
        text = page.get_text(" ")
        found += [f"{name}: {text[max(0, m.start() - 60):m.end() + 40]!r}" for m in ROLE.finditer(text)]
    assert not found, "unrendered MyST roles:\n" + "\n".join(found[:20])


def test_the_prose_writes_a_percentage_with_a_space_before_the_sign(pages):
    """Typed, glued and tabulated percentages read alike ("95 %"); a share formatted with ``:.0%`` reads "95%"."""
    found = []
    for name, path in pages.items():
        page = _soup(path)
        for skip in page.select("div.highlight, pre, .math, script, style"):  # code and formulas
            skip.decompose()
        for block in page.select("article p, article li, article td, article th, article caption"):
            text = block.get_text(" ")
            found += [f"{name}: {text[max(0, m.start() - 50):m.end() + 20]!r}" for m in re.finditer(r"\d%", text)]
    found = list(dict.fromkeys(found))  # a paragraph inside a list item is seen twice
    assert not found, "percentages without a space before the sign:\n" + "\n".join(found[:20])


def test_mathjax_is_served_by_the_site_itself(pages):
    assert (SITE / "_static" / "mathjax" / "tex-svg.js").is_file()
    for name, path in pages.items():
        page = _soup(path)
        remote = [tag.get("src") or tag.get("href") for tag in page.find_all(["script", "link"])
                  if re.match(r"(https?:)?//", tag.get("src") or tag.get("href") or "")]
        assert not remote, f"{name} loads {remote} from the network"
    mathjax = [s["src"] for s in _soup(pages["notebooks/02_cvae_derivation.html"]).find_all("script", src=True)
               if "mathjax" in s["src"]]
    assert [src.split("?")[0] for src in mathjax] == ["../_static/mathjax/tex-svg.js"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])
def test_chapter_pages_offer_the_py_source_repository_and_launch_buttons(pages, chapter):
    page = _soup(pages[f"{chapter.docname}.html"])
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    links = {a.get("href", "") for a in page.find_all("a")}
    py = f"../_sources/{chapter.docname}.py"
    assert py in links, "the download menu offers the jupytext .py source"
    assert (SITE / "_sources" / f"{chapter.docname}.py").read_bytes() == chapter.source.read_bytes()
    assert f"../_sources/{chapter.docname}.ipynb" in links
    assert config["repository"]["url"] in links, "the repository button"
    assert any("colab.research.google.com" in h for h in links) and any("mybinder.org" in h for h in links)
    notebook = (SITE / "_sources" / f"{chapter.docname}.ipynb").read_text(encoding="utf8")
    assert '"install-battgen"' in notebook and 'find_spec(\\"battgen\\")' in notebook, \
        "a launched notebook installs battgen in its first cell"


@pytest.mark.parametrize("name", ["02_cvae_derivation", "03_cross_attention", "04_unseen_soc_experiments"])
def test_exercises_render_with_solutions_folded(pages, name):
    page = _soup(pages[f"notebooks/{name}.html"])
    exercises, solutions = page.select("div.exercise"), page.select("div.solution")
    assert len(exercises) >= 2 and len(solutions) == len(exercises)
    assert all("dropdown" in s["class"] for s in solutions), "solutions are hidden behind a toggle"


def test_the_architecture_figure_and_the_references(pages):
    page = _soup(pages["notebooks/02_cvae_derivation.html"])
    assert page.find(id="the-model-at-a-glance").find("img"), "chapter 2 draws the architecture"
    references = _soup(pages["references.html"]).get_text(" ")
    assert "blame the ELBO" in references
