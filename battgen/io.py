"""Atomic writes (a result file is either complete or absent, never half-written) and the
fingerprint of the package source that cached results are keyed by."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

__all__ = ["atomic_path", "write_json", "write_table", "progress_enabled", "package_fingerprint"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n")
    return Path(path)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV (``.csv``) or records JSON (``.json``), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".json":
            tmp.write_text(df.to_json(orient="records", indent=2) + "\n")
        else:
            df.to_csv(tmp, index=False)
    return path


def progress_enabled(progress: bool | None) -> bool:
    """``progress`` if given, else ``$BATTGEN_PROGRESS`` (default on); off when CI is set."""
    if progress is not None:
        return bool(progress)
    env = os.environ.get("BATTGEN_PROGRESS")
    if env is not None:
        return env.strip().lower() not in {"0", "false", "no", "off", ""}
    return not os.environ.get("CI")


def package_fingerprint() -> str:
    """sha256 over the battgen package's Python sources: any change to them changes it."""
    return _tree_fingerprint(Path(__file__).resolve().parent, "*.py")


def _tree_fingerprint(folder: Path, pattern: str) -> str:
    """sha256 over the relative paths and contents of the files under ``folder`` matching ``pattern``."""
    files = sorted(p for p in folder.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts)
    return _sha256_bytes(*(x for p in files for x in (p.relative_to(folder).as_posix().encode(), p.read_bytes())))


def _sha256_bytes(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
