"""A fresh clone on a new machine: no ../shared, no BATTGEN_DATA_DIR, the data from the download cache.

The download from the pinned upstream URLs is simulated by a pre-filled cache: the PulseBat files
are copied into the layout battgen's pooch cache uses (``<XDG_CACHE_HOME>/battgen/<registry key>``),
``XDG_CACHE_HOME`` points at it, and a dead proxy makes any real download fail at once, so the
test needs no network and would notice one.

Scope, so that it runs in CI time (about a minute): what differs on a fresh machine is *where the
inputs come from*, and every chapter reads them through the same two paths, so the test runs each
path once in the clone, with the clone's own battgen:

1. every registered data file through :func:`battgen.data.fetch` (hash-checked in the cache) and
   every battery type through :func:`battgen.data.load_pulsebat`: the path of every chapter's data;
2. chapter 4's reference numbers, which ship in the repository (``data/reference/``) and used to
   be looked for beside ``BATTGEN_DATA_DIR``;
3. one chapter executed end to end by the book's runner (chapter 1: it reads the feature tables
   *and* a raw workstep file), as ``make book`` and ``jupyter-book build book/`` run it;

and checks statically that no chapter source and no module of the package names ``../shared``.
The rest of the book adds training time, not new ways to find inputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, data_dir):
    """A clone of the committed repository with nothing beside it, and the environment of a new machine."""
    from battgen.data import REGISTRY

    if shutil.which("git") is None:
        pytest.fail("git is needed to clone the repository", pytrace=False)
    root = tmp_path_factory.mktemp("fresh")
    clone = root / "battgen"
    done = subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cache = root / "cache"
    for key in REGISTRY:  # the pooch cache layout of battgen.data.cache_dir(): <cache>/battgen/<key>
        target = cache / "battgen" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data_dir / key, target)
    env = {k: v for k, v in os.environ.items() if k not in {"BATTGEN_DATA_DIR", "NO_PROXY", "no_proxy"}}
    env |= {"XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(clone), "BATTGEN_PROGRESS": "0",
            "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    assert not (root / "shared").exists()
    return clone, env


def _python(clone: Path, env: dict, code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_data_come_from_the_cache_and_the_reference_from_the_repository(fresh):
    clone, env = fresh
    out = _python(clone, env, """
import battgen, os
from pathlib import Path
from battgen.data import BATTERIES, REGISTRY, cache_dir, fetch, load_pulsebat
from battgen.evaluation.paper import load_reference, reference_path
assert os.environ.get("BATTGEN_DATA_DIR") is None
print("package", Path(battgen.__file__).resolve().parent.parent)
paths = [fetch(key) for key in REGISTRY]
assert all(p.is_relative_to(cache_dir()) for p in paths), paths
rows = sum(len(load_pulsebat(b, w)) for b in BATTERIES for w in (5, 3))
ref = reference_path()
print("reference", Path(ref).resolve())
print("rows", rows, "reference rows", len(load_reference()))
""")
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert Path(lines["package"]) == clone.resolve(), "the clone's own battgen was imported"
    assert Path(lines["reference"]).is_relative_to(clone.resolve() / "data" / "reference")
    assert int(lines["rows"].split()[0]) > 2000 and int(lines["rows"].split()[-1]) > 0


def test_a_chapter_executes_in_the_clone_without_shared_data(fresh):
    clone, env = fresh
    done = subprocess.run([sys.executable, "-m", "battgen.book", "run", "--profile", "smoke", "--only",
                           "01_data_exploration", "--jobs", "1"], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    executed = (clone / "book" / "notebooks" / "01_data_exploration.ipynb").read_text(encoding="utf8")
    assert 'data_dir = None' in executed, "the chapter read the data from the download cache"
    assert str(clone) not in executed and "/shared/" not in executed


def test_the_makefile_of_the_clone_finds_no_data_folder_and_tests_read_the_cache(fresh):
    clone, env = fresh
    show = ["make", "-s", "-C", str(clone), "--eval", 'show-data: ; @echo "[$(BATTGEN_DATA_DIR)]"', "show-data"]
    done = subprocess.run(show, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "no ../shared beside the clone: the chapters read the download cache"
    venv = Path(sys.executable).parent.parent  # `make -n` only prints: nothing is installed or run
    dry = subprocess.run(["make", "-n", "-C", str(clone), "unit", f"VENV={venv}"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "battgen fetch" in dry.stdout, "without a data folder, make fetches the data first"
    assert "BATTGEN_DATA_DIR=\"${BATTGEN_DATA_DIR:-$(" in dry.stdout and "cache_dir()" in dry.stdout, \
        "and points the tests at the cache"


def test_no_code_path_looks_beside_the_repository():
    offenders = [p.relative_to(REPO).as_posix()
                 for p in [*(REPO / "battgen").rglob("*.py"), *(REPO / "notebooks").glob("*.py")]
                 if "../shared" in p.read_text(encoding="utf8") or "shared/pulsebat" in p.read_text(encoding="utf8")]
    assert not offenders, f"these read ../shared, which a fresh clone does not have: {offenders}"
