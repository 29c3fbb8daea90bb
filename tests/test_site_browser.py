"""The built site in a real browser, offline: headless Chromium opens every page from disk.

Marked ``book`` (run with ``--book`` after the build). Debian's ``chromium`` is driven over the
DevTools protocol (``websocket-client``), with the network emulated offline and every request
that is not a ``file:`` or ``data:`` URL recorded. For every page: the formulas are typeset (no
raw ``\\(`` or ``\\[`` left in the text, every ``.math`` element holds MathJax's output), every
image loaded, and nothing was logged as an error. A screenshot of the top of each chapter page is
written to ``_build/screenshots/`` (what a reader sees first). ``.ci/run`` installs chromium; on
a machine without it the test fails and says how to install it.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "_build" / "html"
SHOTS = REPO / "_build" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
         "--remote-debugging-port=0", "--window-size=1280,900"]

pytestmark = pytest.mark.book

CHECKS = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all([...document.images].map(img => {
    img.loading = "eager";
    return img.complete ? null : new Promise(done => { img.onload = img.onerror = done; setTimeout(done, 5000); });
  }));
  const article = (document.querySelector("article") || document.body).cloneNode(true);
  article.querySelectorAll("pre, code, .highlight, script, style, mjx-container").forEach(e => e.remove());
  const text = article.innerText;
  return {
    raw_math: (text.match(/\\\(|\\\[|\$\$/g) || []).length,
    untypeset: [...document.querySelectorAll("span.math, div.math")].filter(e => !e.querySelector("mjx-container")).length,
    typeset: document.querySelectorAll("mjx-container").length,
    broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    images: document.images.length,
  };
})()
"""


class Page:
    """One Chromium tab over the DevTools protocol: send a command, collect the events."""

    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []

    def send(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(e.get("method") == event for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed to check the site: `apt-get update && apt-get install chromium` "
                    "(.ci/run does it)", pytrace=False)
    if not (SITE / "intro.html").is_file():
        pytest.fail(f"no built site in {SITE}: run `jupyter-book build book/` first", pytrace=False)
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, end = profile / "DevToolsActivePort", time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > end or proc.poll() is not None:
                pytest.fail("chromium did not start (no DevToolsActivePort)", pytrace=False)
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        from urllib.request import urlopen

        targets = json.loads(urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        page.send("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                  uploadThroughput=-1)
        yield page
        page.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _pages() -> list[str]:
    skip = ("genindex.html", "search.html", "index.html")  # index.html only redirects to intro.html
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts and p.name not in skip)


def _problems(events: list[dict]) -> tuple[list[str], list[str]]:
    errors, remote = [], []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("exception", {}).get("description", "exception"))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(f"{params['entry'].get('text')} ({params['entry'].get('url', '')})")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "blob:", "about:")):
                remote.append(url)
    return errors, remote


def test_every_page_renders_offline_with_formulas_images_and_no_error(browser):
    pages = _pages()
    assert len(pages) >= 8, pages
    SHOTS.mkdir(parents=True, exist_ok=True)
    failures, typeset = [], 0
    for name in pages:
        browser.events.clear()
        browser.send("Page.navigate", url=(SITE / name).as_uri())
        browser.wait_for("Page.loadEventFired")
        result = browser.send("Runtime.evaluate", expression=CHECKS, awaitPromise=True, returnByValue=True)
        found = result["result"]["value"]
        errors, remote = _problems(browser.events)
        typeset += found["typeset"]
        if found["raw_math"] or found["untypeset"] or found["broken_images"] or errors or remote:
            failures.append(f"{name}: raw math {found['raw_math']}, untypeset {found['untypeset']}, "
                            f"broken images {found['broken_images']}, console errors {errors}, network {remote}")
        if name.startswith("notebooks/") or name == "intro.html":
            shot = browser.send("Page.captureScreenshot", format="png")
            (SHOTS / name.replace("/", "_").replace(".html", ".png")).write_bytes(base64.b64decode(shot["data"]))
    assert not failures, "\n".join(failures)
    assert typeset >= 50, f"only {typeset} formulas typeset over the whole site"
