"""Shared fixtures and the ``book`` marker.

``data_dir``: the PulseBat folder, ``$BATTGEN_DATA_DIR`` or ``<repo>/../shared/pulsebat``. A test
that asks for it FAILS (never skips) when the folder is missing: a green run must mean the data
were there.

``book``: tests of the built site (``_build/html``). They need the executed notebooks and the
book build, so they run only with ``--book`` (``make test`` passes it after the build) and are
deselected otherwise; with ``--book`` a missing site is a failure, not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--book", action="store_true", default=False,
                     help="run the tests marked 'book', which check the built site in _build/html "
                          "(run `make notebooks` and the book build first; `make test` does all of it)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "book: checks of the built site _build/html; run with --book after the build")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--book"):
        return
    deselected = [item for item in items if item.get_closest_marker("book")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("book")]


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.getoption("--book"):
        return "book tests (site checks) deselected: pass --book after building the site"
    return None


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The PulseBat folder; fails the test (never skips) when it does not exist."""
    path = Path(os.environ.get("BATTGEN_DATA_DIR") or REPO.parent / "shared" / "pulsebat").expanduser()
    if not path.is_dir():
        pytest.fail(
            f"PulseBat data folder {path} does not exist. Set BATTGEN_DATA_DIR to the folder holding "
            "features_5s/, workstep/, ... (on the project's machines: ../shared/pulsebat).",
            pytrace=False,
        )
    return path
