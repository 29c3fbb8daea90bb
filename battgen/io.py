"""Files in and out, safely: atomic writes with ordinary permissions (a result file is either
complete or absent, never half-written), output locations checked before any work, a user's
CSV table read with one-line errors, and the fingerprint of the package source that cached
results are keyed by."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

__all__ = [
    "OutputError",
    "atomic_path",
    "check_output",
    "read_table",
    "write_bytes",
    "write_npz",
    "zip_bytes",
    "npy_bytes",
    "write_json",
    "write_table",
    "progress_enabled",
    "progress_bar",
    "package_fingerprint",
    "sha256_parts",
]


class OutputError(ValueError):
    """An output location that cannot, or must not, be written (checked before any work)."""


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the mode an ordinary ``open(path, "w")`` would give it (``0o666`` less the
    umask), not the ``0o600`` of the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: no clock in the bytes


def zip_bytes(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A zip archive (stored) of ``(name, data)`` files in the order given, with a fixed date and mode:
    the same files give the same bytes (model files are reproducible to the byte)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def npy_bytes(array: Any) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_npz(arrays: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``arrays`` as a NumPy ``.npz`` archive (``numpy.load(path, allow_pickle=False)`` reads it),
    atomically and to the byte the same for the same arrays (in the order given)."""
    return write_bytes(zip_bytes((f"{name}.npy", npy_bytes(value)) for name, value in arrays.items()), path)


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


# --------------------------------------------------------------------------- output locations


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str | os.PathLike, *, inputs: Mapping[str | os.PathLike, str] | Iterable[str | os.PathLike] = (),
                 force: bool = False, folder: bool = False, option: str = "") -> Path:
    """Check, before any work, that ``path`` can and may be written; raise :class:`OutputError` if not.

    Refused: a path that is one of ``inputs`` (even with ``force``: an input is never
    overwritten; a mapping gives each input's role for the message), an existing file unless
    ``force`` (an earlier output is kept unless asked), an existing folder where a file is
    wanted (or a file where a ``folder`` is wanted), anything that is not a regular file, a path
    below a regular file, and a place that cannot be written: the nearest existing folder must
    have a write bit (a folder nobody may write to is read-only by intent, also for root) and a
    temporary file must be creatable there. Messages start with ``option`` and the path.
    """
    path = Path(path)
    label = f"{option} {path}" if option else str(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{label}: exists and is not a folder; expected a folder to write the results into")
    elif path.is_dir():
        raise OutputError(f"{label}: is a folder; expected the name of a file to write")
    elif (path.exists() or path.is_symlink()) and not path.is_file():
        raise OutputError(f"{label}: exists and is not a regular file; it is not replaced")
    roles = inputs if isinstance(inputs, Mapping) else {source: "an input" for source in inputs}
    for source, role in roles.items():
        if _same_file(path, Path(source)):
            raise OutputError(f"{label}: is {role} of this command; an input is never overwritten: write the output "
                              "to another file")
    if not folder and path.exists() and not force:
        raise OutputError(f"{label}: exists; it is not replaced unless you pass --force")
    ancestor = path if folder else path.parent
    while not ancestor.exists():
        if ancestor.is_symlink():
            raise OutputError(f"{label}: cannot be created: {ancestor} is a broken symbolic link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{label}: cannot be created: {ancestor} is a file, not a folder")
    mode = ancestor.stat().st_mode
    if not mode & 0o222:  # no write bit for anyone: read-only by intent, even for root (who may write anyway)
        raise OutputError(f"{label}: cannot write in {ancestor} (a read-only folder, mode {mode & 0o777:04o})")
    try:
        fd, probe = tempfile.mkstemp(prefix=".battgen-probe-", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{label}: cannot write in {ancestor} ({exc.strerror or exc})") from exc
    return path


# --------------------------------------------------------------------------- reading a user's table

_WORKBOOK_MAGIC = {b"PK\x03\x04": "an Excel workbook (.xlsx) or another zip archive",
                   b"\xd0\xcf\x11\xe0": "an Excel 97-2003 workbook (.xls)"}
_SEPARATORS = {";": "semicolons (;)", "\t": "tabs", "|": "vertical bars (|)"}


def read_table(path: str | os.PathLike, what: str = "table") -> pd.DataFrame:
    """Read a comma-separated CSV (or records JSON, ``.json``) file; ``ValueError`` in one line otherwise.

    The line names the file and the cause: no such file, a folder, an empty file, a header
    without rows, a workbook or other binary file, text that is not UTF-8, columns separated by
    something other than commas (the separator is named), or rows that do not parse. ``what``
    says what the file should hold (for the messages).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; expected a CSV file ({what})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError(f"{path}: the file is empty; expected a CSV file with a header line ({what})")
    for magic, kind in _WORKBOOK_MAGIC.items():
        if raw.startswith(magic):
            raise ValueError(f"{path}: is {kind}, not a CSV file; save the sheet as CSV (comma-separated) first")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: is not UTF-8 text (byte {raw[exc.start]:#04x} on line {raw[:exc.start].count(10) + 1}); "
                         f"expected a CSV file ({what}); save it as CSV UTF-8") from exc
    if "\x00" in text:
        raise ValueError(f"{path}: is a binary file, not a CSV file ({what})")
    try:
        if path.suffix.lower() == ".json":
            df = pd.read_json(path, orient="records")
        else:
            header = text.lstrip().splitlines()[0]
            for sep, name in _SEPARATORS.items():
                if sep in header and "," not in header:
                    raise ValueError(f"{path}: columns are separated by {name}, not commas; save it as "
                                     f"comma-separated CSV (header line starts {header[:40]!r})")
            df = pd.read_csv(path, encoding="utf-8-sig")
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot be read as {'records JSON' if path.suffix.lower() == '.json' else 'CSV'} "
                         f"({' '.join(str(exc).split())})") from exc
    if df.empty:
        raise ValueError(f"{path}: has a header but no data rows; expected {what}")
    return df


# --------------------------------------------------------------------------- progress, fingerprints


def progress_enabled(progress: bool | None) -> bool:
    """``progress`` if given, else ``$BATTGEN_PROGRESS`` (default on); off when CI is set."""
    if progress is not None:
        return bool(progress)
    env = os.environ.get("BATTGEN_PROGRESS")
    if env is not None:
        return env.strip().lower() not in {"0", "false", "no", "off", ""}
    return not os.environ.get("CI")


def progress_bar(iterable=None, *, progress: bool | None = None, **kwargs):
    """A tqdm progress bar, shown only if :func:`progress_enabled` (``progress``). Plain tqdm, never
    ``tqdm.auto``: in a Jupyter kernel without ipywidgets that one warns, with the path of the
    machine's Python installation, onto the page."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not progress_enabled(progress), **kwargs)


def package_fingerprint() -> str:
    """sha256 over the battgen package's Python sources: any change to them changes it."""
    return _tree_fingerprint(Path(__file__).resolve().parent, "*.py")


def _tree_fingerprint(folder: Path, pattern: str) -> str:
    """sha256 over the relative paths and contents of the files under ``folder`` matching ``pattern``."""
    files = sorted(p for p in folder.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts)
    return sha256_parts(*(x for p in files for x in (p.relative_to(folder).as_posix().encode(), p.read_bytes())))


def sha256_parts(*parts: bytes) -> str:
    """Hex sha256 of a sequence of byte strings, each prefixed by its length (so parts cannot run together)."""
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
