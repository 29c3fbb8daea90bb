"""PulseBat data access: a registry of the public files, verified fetching, one tidy schema.

Every file battgen reads is listed in :data:`REGISTRY` with its upstream URL (pinned commit)
and sha256. :func:`fetch` looks in ``data_dir`` (or ``$BATTGEN_DATA_DIR``) first and checks the
hash there too; otherwise pooch downloads the file into a user cache. :func:`load_pulsebat`
returns one tidy :class:`pandas.DataFrame` per battery type, with the files' quirks normalised
away and every value checked against its physical range.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence
from urllib.parse import quote

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a table is read: the registry and fetch() need none
    import pandas as pd

__all__ = [
    "BATTERIES",
    "FEATURES",
    "REGISTRY",
    "SCHEMA",
    "DataIntegrityError",
    "DataFile",
    "BatteryType",
    "data_dir_from_env",
    "fetch",
    "load_pulsebat",
    "battery_frames",
    "sha256",
    "validate_features",
]

ENV_VAR = "BATTGEN_DATA_DIR"
FEATURES: list[str] = [f"U{i}" for i in range(1, 22)]
"""The 21 pulse-response voltages (V) that every model in battgen reads."""

SCHEMA: list[str] = [
    "battery",  # battery type key, e.g. "NMC2.1"
    "cathode",  # NMC / LMO / LFP
    "cell",  # physical cell (NMC 2.1 Ah: the cell behind several ageing checkpoints)
    "battery_id",  # one tested battery (NMC 2.1 Ah: cell at one ageing checkpoint)
    "qn_ah",  # nominal capacity, Ah
    "q_ah",  # calibrated capacity, Ah
    "soh",  # q_ah / qn_ah
    "pulse_width_s",  # pulse width, s
    "soc",  # state of charge, fraction (0.05 ... 0.50)
    *FEATURES,
]
"""Column order of :func:`load_pulsebat` (and of :mod:`battgen.features`)."""

VOLTAGE_RANGE_V = (1.5, 5.0)
SOH_RANGE = (0.0, 1.5)  # exclusive lower bound; a fresh cell may test a little above nominal
SOC_RANGE_PCT = (0.0, 100.0)  # exclusive lower bound

_PULSEBAT = ("terencetaothucb/Pulse-Voltage-Response-Generation", "92aeb9b8a26bc337164401411271fa8eeadf605c")
_PAPERCODE = (
    "terencetaothucb/CVAE-Rapid-SOH-Estimation-for-Retired-Batteries-Using-Generated-Data",
    "d355575faed26decbdf88c55fe5609640b9a4bc5",
)


class DataIntegrityError(ValueError):
    """A data file exists but its content is not the published one (sha256 mismatch)."""


@dataclass(frozen=True)
class DataFile:
    """One registered file: where it lives here (``key``) and upstream, and its sha256."""

    key: str  # path relative to the data dir, e.g. "features_5s/NMC_2.1Ah_W_5000.xlsx"
    repo: str
    commit: str
    upstream_path: str
    sha256: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{quote(self.upstream_path)}"


def _file(key: str, source: tuple[str, str], upstream_path: str, digest: str) -> DataFile:
    return DataFile(key, source[0], source[1], upstream_path, digest)


_WS = "LMO_C_10_B_2_SOC_5-55_Part_1-1_ID_PIP15827A00221240.xlsx"
_WS_NMC = "NMC_C_21_B_6_SOC_5-90_Part_1-2_ID_02LCC02100101A87Y0052124.xlsx"
_FEATURE_FILES = [  # (file stem, upstream folder of the 5 s file, sha256 of the 5 s file, sha256 of the 3 s file)
    ("NMC_2.1Ah", "2.1Ah NMC", "60822626f9ecddb77470a9d4764c90031dcce8aa3ed9d271d486ee9a35da323c",
     "91921152dc0c0212cf1347d87ad76c5881ae7cf72f9ec1a954986ec90e6787ba"),
    ("LMO_10Ah", "10Ah LMO", "70820b404b712a3764781e6c6dab1999ea884b0f60028b34ffe11bae1c3db9ba",
     "0e23afb2ea39ac87da19a7c10c39648e645d5a6ff8161c59fc2556dc87a52b19"),
    ("NMC_21Ah", "21Ah NMC", "cc826a7c5901a15075cfcc38184153f83223b3438ed92fd9b17adce34b7af5ee",
     "7700a56987e2148fbf7d6e87a940634735be8efa0c65d57213ec945dcafafe0c"),
    ("LFP_35Ah", "35Ah LFP", "3acc96033ba5474171ff8ddd0eef159e37e10034473e33814fd8aa398e4d7538",
     "87ac5028615481e06442b9bb87f5a87189171c7411624796ed79a31d4a25187d"),
]
REGISTRY: dict[str, DataFile] = {
    f.key: f
    for f in [
        # the paper's 5 s features (PulseBat) and the 3 s features the authors' code reads
        *(_file(f"features_5s/{stem}_W_5000.xlsx", _PULSEBAT, f"ProcessedData_adjustable/{folder}/{stem}_W_5000.xlsx", sha5)
          for stem, folder, sha5, _ in _FEATURE_FILES),
        *(_file(f"features_3s/{stem}_W_3000.xlsx", _PAPERCODE, f"battery_data/{stem}_W_3000.xlsx", sha3)
          for stem, _, _, sha3 in _FEATURE_FILES),
        _file(f"workstep/{_WS_NMC}", _PULSEBAT,
              f"ProcessingData Example/step_1_extract workstep sheet/21Ah NMC/{_WS_NMC}",
              "ef8e1354a6e28107473c27476996d28dfdeb38c3485c664cf776118c194a1659"),
        _file(f"workstep/{_WS}", _PULSEBAT, f"Unexpected Situations Handling/{_WS}",
              "a304a4ed953dedc1320e777a92fb95b17eb4022f7b54561a89bfce4f04cefd9f"),
        _file(f"workstep_features/{_WS}", _PULSEBAT,
              f"ProcessingData Example/step_2_feature extraction_adjustable/10Ah LMO/{_WS}",
              "e41e785f50d706769bad80654000e426f761273302e992f4681fd62e6b5380ee"),
    ]
}


@dataclass(frozen=True)
class BatteryType:
    """One of the four PulseBat battery designs."""

    key: str  # "NMC2.1", "LMO10", "NMC21", "LFP35"
    cathode: str
    nominal_ah: float
    files: dict[int, str]  # pulse width (s) -> registry key
    physic_weight: float  # the authors' per-type voltage step for extrapolation (V per 5 % SOC)
    label: str


BATTERIES: dict[str, BatteryType] = {
    b.key: b
    for b in [
        BatteryType("NMC2.1", "NMC", 2.1, {5: "features_5s/NMC_2.1Ah_W_5000.xlsx", 3: "features_3s/NMC_2.1Ah_W_3000.xlsx"},
                    0.043, "NMC 2.1 Ah"),
        BatteryType("LMO10", "LMO", 10.0, {5: "features_5s/LMO_10Ah_W_5000.xlsx", 3: "features_3s/LMO_10Ah_W_3000.xlsx"},
                    0.095, "LMO 10 Ah"),
        BatteryType("NMC21", "NMC", 21.0, {5: "features_5s/NMC_21Ah_W_5000.xlsx", 3: "features_3s/NMC_21Ah_W_3000.xlsx"},
                    0.04, "NMC 21 Ah"),
        BatteryType("LFP35", "LFP", 35.0, {5: "features_5s/LFP_35Ah_W_5000.xlsx", 3: "features_3s/LFP_35Ah_W_3000.xlsx"},
                    0.0295, "LFP 35 Ah"),
    ]
}


def battery_type(name: str) -> BatteryType:
    """Look up a battery type by key (``"LMO10"``), label (``"LMO 10 Ah"``) or cathode (``"lmo"``)."""
    norm = re.sub(r"[\s_]", "", str(name).lower()).removesuffix("ah")
    lookup = {b.key.lower(): b for b in BATTERIES.values()} | {"lmo": BATTERIES["LMO10"], "lfp": BATTERIES["LFP35"]}
    if norm not in lookup:
        raise ValueError(f"unknown battery type {name!r}; expected one of {sorted(BATTERIES)}")
    return lookup[norm]


# --------------------------------------------------------------------------- fetching


def data_dir_from_env() -> Path | None:
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def _pooch():
    """pooch, imported quietly: its ``tqdm.auto`` import warns in a Jupyter kernel without ipywidgets,
    naming the Python installation's path on the page, and its logger's "Downloading data from ..."
    line would make a failed download two lines (battgen's own message says what happened)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pooch
    pooch.get_logger().setLevel("WARNING")
    return pooch


def cache_dir() -> Path:
    return Path(_pooch().os_cache("battgen"))


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _verified(path: str, size: int, mtime_ns: int, expected: str) -> str:
    actual = sha256(path)
    if actual != expected:
        raise DataIntegrityError(
            f"{path}: sha256 mismatch: expected {expected}, got {actual}. The file is not the published "
            "PulseBat file; delete it (or fix the folder named by BATTGEN_DATA_DIR) and fetch again."
        )
    return path


def verify(path: Path, entry: DataFile) -> Path:
    """Check ``path`` against the registered sha256; raise :class:`DataIntegrityError` if it differs."""
    st = path.stat()
    return Path(_verified(str(path), st.st_size, st.st_mtime_ns, entry.sha256))


def fetch(key: str, data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Return a local, hash-verified path to the registered file ``key``.

    Looks in ``data_dir`` (or ``$BATTGEN_DATA_DIR``) first, then in the pooch cache, then
    downloads from the pinned upstream URL. Raises :class:`FileNotFoundError` naming the URL and
    the environment variable when the file cannot be had, :class:`DataIntegrityError` on a hash
    mismatch.
    """
    if key not in REGISTRY:
        raise KeyError(f"{key!r} is not a registered PulseBat file; known: {sorted(REGISTRY)}")
    entry = REGISTRY[key]
    local_dir = Path(data_dir).expanduser() if data_dir is not None else data_dir_from_env()
    if local_dir is not None and (local_dir / key).is_file():
        return verify(local_dir / key, entry)
    cached = cache_dir() / key
    if cached.is_file():
        return verify(cached, entry)
    where = f"{local_dir / key} does not exist; " if local_dir is not None else ""
    if not download:
        raise FileNotFoundError(f"{where}{key} is not cached. Run `battgen fetch`, or set {ENV_VAR} to a folder holding it.")
    pooch = _pooch()
    try:
        path = pooch.retrieve(entry.url, known_hash=f"sha256:{entry.sha256}", fname=Path(key).name,
                              path=cached.parent, progressbar=False)
    except ValueError as exc:  # pooch's hash mismatch
        raise DataIntegrityError(f"{entry.url}: downloaded file failed its hash check: {exc}") from exc
    except Exception as exc:  # network errors of every kind
        raise FileNotFoundError(
            f"{where}could not download {key} from {entry.url} ({type(exc).__name__}: {exc}). "
            f"Download it by hand into a folder and set {ENV_VAR} to that folder (keep the "
            f"'{Path(key).parent}/' subfolder)."
        ) from exc
    return Path(path)


# --------------------------------------------------------------------------- loading

_RENAME = {"W": "Pt", "Idx": "File_Name"}
_MAT_FIX = {"NMO": "LMO", "NCM": "NMC"}


def _excel_row(df: pd.DataFrame, i: int) -> int:
    return int(df.index[i]) + 2  # header is row 1, data start at row 2


def _as_numbers(df: pd.DataFrame, col: str, source: str, what: str) -> pd.Series:
    """Column ``col`` as floats; ValueError naming file, column and row if missing, text or NaN."""
    import pandas as pd

    if col not in df.columns:
        raise ValueError(f"{source}: column {col!r} is missing; expected {what}")
    values = pd.to_numeric(df[col], errors="coerce")
    for bad, problem in ((values.isna() & df[col].notna(), "{value!r} is not a number"), (values.isna(), "value is missing (NaN)")):
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{source}: column {col!r}, row {_excel_row(df, i)}: "
                             f"{problem.format(value=df[col].iloc[i])}; expected {what}")
    return values.astype(float)


def _in_range(values: pd.Series, df: pd.DataFrame, col: str, source: str, lo: float, hi: float, what: str,
              lo_inclusive: bool = False) -> None:
    out = ((values < lo) if lo_inclusive else (values <= lo)) | (values > hi)
    if out.any():
        i = int(np.flatnonzero(out.to_numpy())[0])
        interval = f"{'[' if lo_inclusive else '('}{lo}, {hi}]"
        raise ValueError(f"{source}: column {col!r}, row {_excel_row(df, i)}: {float(values.iloc[i])!r} is outside {interval}; expected {what}")


def validate_features(df: pd.DataFrame, source: str, columns: list[str] | None = None) -> None:
    """Check that every feature column exists, is numeric, has no NaN and lies in 1.5-5 V.

    Raises ``ValueError`` naming ``source``, the column and the (spreadsheet) row.
    """
    lo, hi = VOLTAGE_RANGE_V
    for col in columns or FEATURES:
        values = _as_numbers(df, col, source, "the pulse voltages U1..U21 in volts")
        _in_range(values, df, col, source, lo, hi, "volts between 1.5 and 5 (millivolts instead of volts?)", lo_inclusive=True)


def _numeric(df: pd.DataFrame, col: str, source: str, lo: float, hi: float, what: str) -> pd.Series:
    values = _as_numbers(df, col, source, what)
    _in_range(values, df, col, source, lo, hi, what)
    return values


def _ids(raw: pd.DataFrame, btype: BatteryType) -> tuple[pd.Series, pd.Series]:
    """Return (cell, battery_id) as strings."""
    if "ID" in raw.columns:
        bid = raw["ID"].astype(str).str.strip()
    else:  # 3 s files without an ID column: "SOC-D3-100.xls" or "..._ID_<id>.xlsx" file names
        name = raw["File_Name"].astype(str)
        bid = name.str.extract(r"_ID_(.+?)\.xlsx?$")[0].fillna(name.str.replace(r"^SOC-|\.xlsx?$", "", regex=True))
    cell = bid.str.split("-").str[0] if btype.key == "NMC2.1" else bid
    return cell, bid


def _read_table(path: Path, btype: BatteryType, pulse_width_s: int) -> pd.DataFrame:
    import pandas as pd

    with pd.ExcelFile(path) as book:
        sheet = "SOC ALL" if "SOC ALL" in book.sheet_names else book.sheet_names[0]
        raw = pd.read_excel(book, sheet_name=sheet, keep_default_na=False, na_values=[""])
    return raw.rename(columns={k: v for k, v in _RENAME.items() if k in raw.columns and v not in raw.columns})


def load_pulsebat(
    battery: str,
    pulse_width_s: int = 5,
    *,
    data_dir: str | os.PathLike | None = None,
    max_soc: float = 0.5,
    path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Load one battery type's pulse features as a tidy, validated DataFrame.

    Parameters
    ----------
    battery: ``"NMC2.1"``, ``"LMO10"``, ``"NMC21"`` or ``"LFP35"`` (labels like ``"LMO 10 Ah"`` work too).
    pulse_width_s: 5 (the features of the paper) or 3 (the files the authors' code reads).
    data_dir: folder looked in before the cache (default ``$BATTGEN_DATA_DIR``).
    max_soc: keep rows with SOC at most this fraction (the paper uses 5-50 %).
    path: read this file instead of the registered one (still validated, not hash-checked).

    Returns columns :data:`SCHEMA`, one row per (battery, SOC), sorted by battery then SOC.
    """
    btype = battery_type(battery)
    if pulse_width_s not in btype.files:
        raise ValueError(f"pulse_width_s must be one of {sorted(btype.files)}, got {pulse_width_s!r}")
    file = Path(path) if path is not None else fetch(btype.files[pulse_width_s], data_dir)
    return _load_cached(str(file), file.stat().st_mtime_ns, btype.key, pulse_width_s, max_soc).copy()


@functools.lru_cache(maxsize=16)
def _load_cached(file: str, mtime_ns: int, key: str, pulse_width_s: int, max_soc: float) -> pd.DataFrame:
    """The tidy table of ``file``: from the parsed-table cache when this content was parsed before, else parsed."""
    stored = _stored_table_path(file, key, pulse_width_s, max_soc)
    table = _read_stored_table(stored) if stored is not None else None
    if table is None:
        table = _parse_table(file, key, pulse_width_s, max_soc)
        if stored is not None:
            _store_table(table, stored)
    return table


def _stored_table_path(file: str, key: str, pulse_width_s: int, max_soc: float) -> Path | None:
    """Where the parsed table of ``file`` is kept in battgen's cache (never in the data folder, which may be
    read-only): named by the file's sha256, the loader's source (any change to this module parses again),
    pandas' version and the arguments. None when the cache folder is unknown."""
    import pandas as pd

    try:
        loader = hashlib.sha256(Path(__file__).read_bytes() + pd.__version__.encode()).hexdigest()[:12]
        folder = cache_dir() / "tables"
    except Exception:  # no usable cache location: parse every time
        return None
    return folder / f"{sha256(file)[:24]}_{loader}_{key}_{pulse_width_s}s_{max_soc:g}.npz"


def _read_stored_table(path: Path) -> pd.DataFrame | None:
    """A table written by :func:`_store_table`, or None if there is none (or it cannot be read)."""
    import pandas as pd

    try:
        with np.load(path, allow_pickle=False) as stored:
            columns = {c: stored[c] for c in SCHEMA}
    except Exception:  # missing, partial or foreign: parse the workbook instead
        return None
    return pd.DataFrame({c: v.astype(object) if v.dtype.kind == "U" else v for c, v in columns.items()})[SCHEMA]


def _store_table(table: pd.DataFrame, path: Path) -> None:
    """Keep ``table`` at ``path`` (numpy arrays, no pickle), written atomically; silently not when the cache is read-only."""
    from battgen.io import write_npz

    try:
        write_npz({c: table[c].to_numpy(dtype=str if table[c].dtype.kind in "OTU" else None) for c in SCHEMA}, path)
    except OSError:
        pass


def _parse_table(file: str, key: str, pulse_width_s: int, max_soc: float) -> pd.DataFrame:
    import pandas as pd

    btype = BATTERIES[key]
    source = Path(file).name
    raw = _read_table(Path(file), btype, pulse_width_s)
    id_col = "ID" if "ID" in raw.columns else "File_Name"
    if id_col not in raw.columns:
        raise ValueError(f"{source}: no battery id column; expected 'ID' or 'File_Name' (or 'Idx')")
    qn = _numeric(raw, "Qn", source, 0.0, 1000.0, "nominal capacity in Ah")
    q = _numeric(raw, "Q", source, 0.0, 1000.0, "calibrated capacity in Ah")
    soh = _numeric(raw, "SOH", source, *SOH_RANGE, "state of health as a fraction of nominal capacity")
    soc_pct = _numeric(raw, "SOC", source, *SOC_RANGE_PCT, "state of charge in percent")
    validate_features(raw, source)
    cell, bid = _ids(raw, btype)
    out = pd.DataFrame(
        {
            "battery": btype.key,
            "cathode": btype.cathode,
            "cell": cell.to_numpy(),
            "battery_id": bid.to_numpy(),
            "qn_ah": qn.to_numpy(),
            "q_ah": q.to_numpy(),
            "soh": soh.to_numpy(),
            "pulse_width_s": float(pulse_width_s),
            "soc": np.round(soc_pct.to_numpy() / 100.0, 4),
        }
    )
    for col in FEATURES:
        out[col] = pd.to_numeric(raw[col]).astype(float).to_numpy()
    out = out[out["soc"] <= max_soc + 1e-9]
    out = out.sort_values(["battery_id", "soc"], kind="stable").reset_index(drop=True)
    return out[SCHEMA]


def battery_frames(batteries: Sequence[str], pulse_width_s: int = 5, frames: Mapping[str, pd.DataFrame] | None = None,
                   data_dir: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """``{key: table}`` of ``batteries`` (keys as in :data:`BATTERIES`): the given ``frames`` where they hold
    one, else :func:`load_pulsebat` (what every benchmark takes, so that a chapter loads each file once)."""
    keys = [battery_type(b).key for b in batteries]
    return {b: frames[b] if frames is not None and b in frames else load_pulsebat(b, pulse_width_s, data_dir=data_dir)
            for b in keys}
