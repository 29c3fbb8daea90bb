"""The book tooling (battgen.book) and the built site (_build/html).

The tooling checks (profiles, glue helper, chapter setup, runner command line) and the checks of
the chapters' jupytext sources (conventions) need no build and always run. The site checks (the
intro and every chapter of _toc.yml, with their figures) are marked ``book``: they run with
``--book`` after ``make notebooks`` and the book build (``make test`` does both first), and a
missing site or page is a failure, never a skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


# --------------------------------------------------------------------------- book tooling


def test_profiles_hold_every_setting_of_the_chapters():
    from battgen.book import PROFILES, profile

    full, smoke = profile("full"), profile("smoke")
    assert set(PROFILES) == {"full", "smoke"} and PROFILES["full"] is full
    assert (full.epochs, full.seeds, full.leakfree_seeds, full.folds, full.cases, full.grid_points, full.threads) == (
        50, (0, 1, 2), (0, 1, 2, 3, 4), 3, tuple(range(8)), 121, 1)
    assert (smoke.epochs, smoke.seeds, smoke.leakfree_seeds, smoke.folds, smoke.cases, smoke.grid_points, smoke.threads) == (
        5, (0,), (0,), 2, (1, 6), 25, 1)
    assert profile(smoke) is smoke
    with pytest.raises(AttributeError):
        smoke.epochs = 50  # frozen


def test_an_unknown_profile_is_named_in_the_error():
    from battgen.book import profile
    from battgen.book.runner import parameters_for

    with pytest.raises(ValueError, match="'nope'.*full.*smoke"):
        profile("nope")
    with pytest.raises(ValueError, match="'nope'"):
        parameters_for("nope", None, Path("results"))


def test_profile_train_config_and_runner_parameters():
    from battgen.book import profile
    from battgen.book.runner import parameters_for
    from battgen.train import TrainConfig

    assert profile("full").train_config() == TrainConfig(epochs=50, threads=1)
    assert profile("smoke").train_config(lr=0.01, threads=None) == TrainConfig(epochs=5, lr=0.01, threads=None)
    assert parameters_for("full", "/data", Path("/r")) == {
        "profile": "full", "seeds": [0, 1, 2], "data_dir": "/data", "results_dir": "/r", "progress": False}


def test_glue_helper_types_values_as_documented(monkeypatch):
    import myst_nb

    from battgen.book import put, put_many
    from battgen.book.glue import glue_value

    for value, expected in [("LFP 35 Ah", "LFP 35 Ah"), (3, 3), (np.int64(7), 7), (np.float32(0.5), 0.5),
                            (np.float64(1.25), 1.25), (2.0, 2.0)]:
        got = glue_value(value)
        assert got == expected and type(got) is type(expected), (value, got)
    for bad in (True, None, [1.0], np.array([1.0])):
        with pytest.raises(TypeError):
            glue_value(bad)
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    put("n", np.int64(4))
    put_many({"a": np.float64(0.5), "b": "text"}, prefix="x_")
    assert calls == [("n", 4, False), ("x_a", 0.5, False), ("x_b", "text", False)]
    assert type(calls[0][1]) is int and type(calls[1][1]) is float


def test_setup_chapter_creates_the_folder_and_reads_the_data_lazily(tmp_path, monkeypatch):
    import battgen.data
    from battgen.book import profile, setup_chapter

    reads = []
    monkeypatch.setattr(battgen.data, "load_pulsebat",
                        lambda b, pulse_width_s=5, *, data_dir=None: reads.append((b, pulse_width_s, data_dir)) or b)
    ctx = setup_chapter("05_economic_analysis", profile="smoke", data_dir=tmp_path / "data", results_dir=tmp_path / "r")
    assert ctx.out_dir == tmp_path / "r" / "05_economic_analysis" and ctx.out_dir.is_dir()
    assert ctx.profile is profile("smoke") and ctx.data_dir == str(tmp_path / "data")
    assert reads == []
    assert list(ctx.frames()) == list(battgen.data.BATTERIES)
    ctx.frames()
    ctx.frames(pulse_width_s=3)
    assert reads == [(b, w, str(tmp_path / "data")) for w in (5, 3) for b in battgen.data.BATTERIES]
    again = setup_chapter("05_economic_analysis", profile="full", results_dir=tmp_path / "r", seeds=[4])
    assert again.profile.seeds == (4,) and again.profile.epochs == 50 and again.data_dir is None


def _run(*code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_python_m_battgen_book_list_runs():
    out = _run("-m", "battgen.book", "list")
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()] == [c.name for c in CHAPTERS]


def test_the_package_stays_light_and_keeps_its_entry_points():
    out = _run("-c", "import sys, battgen.book, battgen.io; "
                     "assert callable(battgen.book.setup), 'the Sphinx extension needs battgen.book.setup'; "
                     "assert battgen.book.package_fingerprint is battgen.io.package_fingerprint; "
                     "print(sorted(m for m in ('torch', 'matplotlib', 'papermill', 'myst_nb', 'sphinx') if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_sphinx_extension_connects_its_guards():
    from battgen.book import setup

    class App:
        def __init__(self):
            self.events = []

        def connect(self, event, callback, priority=500):
            self.events.append(event)

    app = App()
    meta = setup(app)
    assert app.events == ["config-inited", "env-get-outdated"] and meta["parallel_read_safe"]


def test_package_fingerprint_follows_the_sources(tmp_path):
    from battgen.io import _tree_fingerprint

    (tmp_path / "a.py").write_text("x = 1\n")
    first = _tree_fingerprint(tmp_path, "*.py")
    (tmp_path / "b.txt").write_text("not python")
    assert _tree_fingerprint(tmp_path, "*.py") == first
    (tmp_path / "a.py").write_text("x = 2\n")
    assert _tree_fingerprint(tmp_path, "*.py") != first
