"""What the built site serves from its own ``_static``, so that it works offline: MathJax.

MathJax comes from the npm registry's ``mathjax`` package (version :data:`MATHJAX_VERSION`),
installed once with the machine's ``npm`` into battgen's download cache (the folder where pooch
keeps the PulseBat files) or read from ``$BATTGEN_MATHJAX`` (a folder holding ``tex-svg.js``, as
the package's ``es5/`` does). The site loads ``_static/mathjax/tex-svg.js``: the SVG output needs
no web fonts, so formulas render from a file opened straight from disk, with the network off.
Only the parts that page uses are copied (the combined TeX-to-SVG component, the TeX extensions
that it loads on demand, the menu and the accessibility components), a few MB.

``python -m battgen.book mathjax`` installs it (``make setup`` runs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["MATHJAX_ENTRY", "MATHJAX_VERSION", "MathJaxMissing", "copy_mathjax", "find_mathjax", "install_mathjax"]

MATHJAX_VERSION = "3.2.2"
MATHJAX_ENTRY = "tex-svg.js"  # relative to the es5 folder, and to _static/mathjax in the site
_PARTS = (MATHJAX_ENTRY, "input/tex/extensions", "output/svg", "output/svg.js", "a11y", "ui", "adaptors")
ENV_VAR = "BATTGEN_MATHJAX"


class MathJaxMissing(RuntimeError):
    """MathJax is neither installed nor installable here (no npm)."""


def _npm_prefix() -> Path:
    from battgen.data import cache_dir

    return cache_dir() / "npm"


def find_mathjax() -> Path | None:
    """The es5 folder of an installed MathJax, or None."""
    candidates = [Path(os.environ[ENV_VAR]).expanduser()] if os.environ.get(ENV_VAR) else []
    candidates.append(_npm_prefix() / "node_modules" / "mathjax" / "es5")
    return next((c for c in candidates if (c / MATHJAX_ENTRY).is_file()), None)


def install_mathjax() -> Path:
    """The es5 folder of MathJax, installed with ``npm`` from the registry on first use."""
    found = find_mathjax()
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise MathJaxMissing(
            "the book serves MathJax from its own _static (no CDN), installed from the npm package "
            f"mathjax@{MATHJAX_VERSION}, and npm is not installed: install Node.js' npm, or set "
            f"{ENV_VAR} to a folder holding {MATHJAX_ENTRY} (the es5/ folder of that package)"
        )
    prefix = _npm_prefix()
    prefix.mkdir(parents=True, exist_ok=True)
    print(f"[battgen.book] installing mathjax@{MATHJAX_VERSION} from the npm registry into {prefix}", flush=True)
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save",
                           "--loglevel=error", f"mathjax@{MATHJAX_VERSION}"], capture_output=True, text=True)
    found = find_mathjax()
    if done.returncode != 0 or found is None:
        raise MathJaxMissing(f"`npm install mathjax@{MATHJAX_VERSION}` failed: {done.stderr.strip()[-500:]}")
    return found


def copy_mathjax(es5: Path, static_dir: Path) -> Path:
    """Copy the parts of MathJax the pages use into ``static_dir/mathjax``; return that folder."""
    dest = static_dir / "mathjax"
    for part in _PARTS:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, dest / part, dirs_exist_ok=True)
        elif src.is_file():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest
