"""battgen.io: atomic writes with ordinary permissions, output locations checked before any work,
and a user's CSV table read with one-line errors that name the file and the cause."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from battgen.io import OutputError, atomic_path, check_output, read_table, write_bytes, write_json, write_table


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


@pytest.mark.parametrize("write", [
    lambda p: write_table(pd.DataFrame({"a": [1]}), p),
    lambda p: write_json({"a": 1}, p),
    lambda p: write_bytes(b"x", p),
])
def test_written_files_get_the_umask_mode_not_the_temporary_files(tmp_path: Path, umask_027, write) -> None:
    path = write(tmp_path / "sub" / "out")
    assert path.stat().st_mode & 0o777 == 0o640  # 0o666 & ~0o027; mkstemp alone would leave 0o600
    assert [p.name for p in path.parent.iterdir()] == ["out"]  # no temporary file left


def test_a_failed_write_leaves_the_earlier_file(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("earlier\n")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "earlier\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_check_output_accepts_new_files_and_folders(tmp_path: Path) -> None:
    assert check_output(tmp_path / "new" / "deeper" / "out.csv") == tmp_path / "new" / "deeper" / "out.csv"
    assert check_output(tmp_path, folder=True) == tmp_path
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []  # nothing created, probe removed
    (tmp_path / "old.csv").write_text("x")
    assert check_output(tmp_path / "old.csv", force=True) == tmp_path / "old.csv"


def test_check_output_refusals(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "ro").mkdir(mode=0o555)
    (tmp_path / "input.csv").write_text("x")
    (tmp_path / "link.csv").symlink_to(tmp_path / "input.csv")
    cases = [
        (dict(path=tmp_path / "file.txt" / "out.csv"), "cannot be created: {t}/file.txt is a file, not a folder"),
        (dict(path=tmp_path / "dir"), "is a folder; expected the name of a file to write"),
        (dict(path=tmp_path / "file.txt", folder=True), "exists and is not a folder"),
        (dict(path=tmp_path / "file.txt"), "exists; it is not replaced unless you pass --force"),
        (dict(path=tmp_path / "ro" / "a" / "out.csv"), "cannot write in {t}/ro (a read-only folder, mode 0555)"),
        (dict(path=tmp_path / "link.csv", inputs=[tmp_path / "input.csv"], force=True), "is an input of this command"),
        (dict(path=tmp_path / "." / "input.csv", inputs={tmp_path / "input.csv": "the pulses file"}, force=True),
         "is the pulses file of this command; an input is never overwritten"),
        (dict(path=tmp_path / "later.csv", inputs=[tmp_path / "later.csv"]), "is an input"),  # not there yet, same name
        (dict(path=Path("/dev/null"), force=True), "exists and is not a regular file"),
    ]
    for kwargs, message in cases:
        with pytest.raises(OutputError) as err:
            check_output(option="--out", **kwargs)
        assert str(err.value).startswith(f"--out {kwargs['path']}: ") and message.format(t=tmp_path) in str(err.value)
    (tmp_path / "ro").chmod(0o755)


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", b"", "the file is empty"),
    ("blank.csv", b"\n\n  \n", "the file is empty"),
    ("header.csv", b"U1,U2\n", "has a header but no data rows"),
    ("semi.csv", b"U1;U2\n3,7;3,8\n", "columns are separated by semicolons (;), not commas"),
    ("tab.csv", b"U1\tU2\n3.7\t3.8\n", "columns are separated by tabs, not commas"),
    ("book.csv", b"PK\x03\x04rest of a zip", "is an Excel workbook (.xlsx) or another zip archive, not a CSV file"),
    ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1....", "is an Excel 97-2003 workbook (.xls)"),
    ("latin.csv", b"U1,note\n3.7,caf\xe9\n", "is not UTF-8 text (byte 0xe9 on line 2)"),
    ("ragged.csv", b"U1,U2\n3.7,3.8\n3.7,3.8,3.9\n", "cannot be read as CSV (Error tokenizing data. C error: Expected 2 fields"),
    ("bad.json", b"{not json", "cannot be read as records JSON"),
])
def test_read_table_one_line_naming_file_and_cause(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError) as err:
        read_table(tmp_path / name, "pulses")
    text = str(err.value)
    assert text.startswith(f"{tmp_path / name}: ") and message in text and "\n" not in text


def test_read_table_reads_csv_with_bom_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes("\ufeffU1,U2\n3.7,3.8\n".encode())
    assert list(read_table(tmp_path / "a.csv").columns) == ["U1", "U2"]
    (tmp_path / "a.json").write_text('[{"U1": 3.7, "U2": 3.8}]')
    assert read_table(tmp_path / "a.json").iloc[0].tolist() == [3.7, 3.8]
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="is a folder"):
        read_table(tmp_path)


def test_progress_bars_are_plain_tqdm_and_switch_off() -> None:
    """tqdm.auto in a kernel without ipywidgets prints a warning with a machine path onto the page: never import it."""
    import re
    from pathlib import Path

    from battgen.io import progress_bar

    root = Path(__file__).resolve().parents[1]
    auto = re.compile(r"^\s*(from\s+tqdm\.auto\s+import|import\s+tqdm\.auto)", re.M)
    offenders = [str(p.relative_to(root)) for folder in ("battgen", "notebooks", "benchmarks")
                 for p in sorted((root / folder).rglob("*.py")) if auto.search(p.read_text())]
    assert not offenders, offenders
    assert progress_bar(range(3), progress=False).disable and not progress_bar(range(3), progress=True).disable
