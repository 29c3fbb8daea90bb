"""The ``battgen`` command as a hostile but realistic user meets it (issue 12), in subprocesses.

One test (or a few) per numbered item of the issue: each runs the real command in a fresh
process and asserts the exit code, the one-line message on stderr (no traceback), and that no
input or earlier output changed and nothing was left behind (the whole working folder is
snapshotted: every file's bytes and mode). Variants that would only repeat a subprocess call
run in process through ``battgen.cli.main``. Fast: tiny inputs, the interpolation generator,
one epoch; errors are raised before torch is even imported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from battgen.cli import main
from battgen.data import FEATURES, load_pulsebat

LMO_WS = "LMO_C_10_B_2_SOC_5-55_Part_1-1_ID_PIP15827A00221240.xlsx"


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def line(self) -> str:
        """The one line an error must be."""
        lines = self.err.strip().splitlines()
        assert self.rc == 2, (self.rc, self.out, self.err)
        assert len(lines) == 1 and "Traceback" not in self.err, self.err
        assert lines[0].startswith("battgen ") and ": error: " in lines[0], lines[0]
        return lines[0]


def start(*args: object, cwd: Path, data_dir: Path, umask: int | None = None) -> subprocess.Popen:
    """Start ``python -m battgen.cli ARGS`` in a fresh process."""
    env = {"OMP_NUM_THREADS": "1",  # several processes run at once: one thread each, no thread-pool contention
           **os.environ, "BATTGEN_DATA_DIR": str(data_dir), "BATTGEN_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, "-m", "battgen.cli", *map(str, args)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=None if umask is None else (lambda: os.umask(umask)))


def finish(p: subprocess.Popen) -> Run:
    out, err = p.communicate(timeout=600)
    return Run(p.returncode, out, err)


def battgen(*args: object, cwd: Path, data_dir: Path, umask: int | None = None) -> Run:
    """Run ``python -m battgen.cli ARGS`` in a fresh process, to the end."""
    return finish(start(*args, cwd=cwd, data_dir=data_dir, umask=umask))


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(via, *args, cwd=, data_dir=)``: the command in a subprocess (``via="sub"``) or in this process."""
    def run(via: str, *args: object, cwd: Path, data_dir: Path) -> Run:
        if via == "sub":
            return battgen(*args, cwd=cwd, data_dir=data_dir)
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("BATTGEN_DATA_DIR", str(data_dir))
        rc = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(rc, captured.out, captured.err)

    return run


def state(*roots: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mode of every file below ``roots``: equal before and after = nothing changed or added."""
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def in_process(capsys, *args: object) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ": error: " in err[0] if rc else True, err
    return rc, err[-1] if err else ""


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def lfp(data_dir: Path) -> pd.DataFrame:
    return load_pulsebat("LFP35", 5, data_dir=data_dir)


TRAIN = ("train", "--battery", "LFP35", "--soc", 5, 25, 50, "--generator", "interpolation", "--epochs", 1)


@pytest.fixture(scope="module")
def trained(work: Path, data_dir: Path) -> tuple[Path, Run, Run]:
    """An LFP 35 Ah model (interpolation, SOC 5, 25, 50 %) trained by the command, twice at once:
    ``model.pt`` and ``again/other-name.pt`` (item 7)."""
    runs = [start(*TRAIN, "--out", out, cwd=work, data_dir=data_dir) for out in ("model.pt", "again/other-name.pt")]
    first, second = map(finish, runs)
    assert first.rc == 0 and second.rc == 0, first.err + second.err
    return work / "model.pt", first, second


@pytest.fixture(scope="module")
def pulses(work: Path, lfp: pd.DataFrame) -> Path:
    """A few LFP 35 Ah pulses at 35 % SOC in the battgen.data schema (they declare LFP35, 5 s)."""
    path = work / "pulses.csv"
    lfp[lfp["soc"] == 0.35].head(6).to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------- 1. inputs are never outputs


@pytest.mark.parametrize("out, role", [("pulses.csv", "is the pulses file read"), ("./model.pt", "is the model (--model)")])
def test_1_estimate_never_writes_over_its_inputs(trained, pulses, work, data_dir, out: str, role: str) -> None:
    before = state(work)
    run = battgen("estimate", "--model", "model.pt", "pulses.csv", "--out", out, "--force", cwd=work, data_dir=data_dir)
    assert f"battgen estimate: error: --out {Path(out)}: {role} of this command; an input is never overwritten" in run.line
    assert state(work) == before


# --------------------------------------------------------------------------- 2. honest training


def test_2_train_reports_measured_and_generated_rows_truthfully(trained, lfp) -> None:
    from battgen.estimator import SOHEstimator

    path, run, _ = trained
    n = lfp["battery_id"].nunique()
    assert (f"on {3 * n} measured rows at 5, 25, 50 % SOC and {7 * n} generated rows at 10, 15, 20, 30, 35, 40, 45 % SOC"
            in run.out), run.out
    est = SOHEstimator.load(path)
    assert len(np.unique(est.train_X_, axis=0)) == len(est.train_X_) == 10 * n  # generated rows are not copies


@pytest.mark.parametrize("via, soc, message", [
    ("sub", (0, 25), "battgen train: error: argument --soc: '0' is not an SOC level in % (an integer from 1 to 100)"),
    ("in", (25, 120), "argument --soc: '120' is not an SOC level"),
    ("in", (7, 25), "battgen train: error: PulseBat LMO10 (5 s pulses): no rows at SOC 7 %; it has rows at 5, 10, 15"),
    ("sub", (25, 60), "no rows at SOC 60 %"),
    ("sub", (25,), "battgen train: error: --soc 25: one measured SOC level; generator 'interpolation' needs at least two"),
])
def test_2_train_refuses_absent_or_single_soc_levels(trained, work, data_dir, cli, via, soc, message: str) -> None:
    earlier = work / "earlier.pt"
    shutil.copyfile(trained[0], earlier)
    before = state(work)
    run = cli(via, "train", "--battery", "LMO10", "--soc", *soc, "--generator", "interpolation", "--epochs", 1,
              "--out", earlier, "--force", cwd=work, data_dir=data_dir)
    assert message in run.line
    assert state(work) == before  # the earlier model is intact, nothing else written


# --------------------------------------------------------------------------- 3. declared design / pulse width


def test_3_estimate_refuses_another_battery_design(trained, work, data_dir) -> None:
    lmo = load_pulsebat("LMO10", 5, data_dir=data_dir).head(4)
    lmo.to_csv(work / "lmo.csv", index=False)
    before = state(work)
    run = battgen("estimate", "--model", "model.pt", "lmo.csv", "--out", "soh.csv", cwd=work, data_dir=data_dir)
    assert ("battgen estimate: error: lmo.csv: row 2: column 'battery' declares LMO10, the model was trained on LFP35 "
            "(and 3 more rows); refusing to estimate SOH of pulses from another battery design or pulse width") in run.line
    assert state(work) == before


def test_3_other_pulse_width_refused_or_flagged_when_overridden(trained, work, data_dir, capsys) -> None:
    three = load_pulsebat("LFP35", 3, data_dir=data_dir)
    three[three["soc"] == 0.35].head(3).to_csv(work / "three.csv", index=False)
    rc, line = in_process(capsys, "estimate", "--model", trained[0], work / "three.csv", "--out", work / "s3.csv")
    assert rc == 2 and "column 'pulse_width_s' declares 3 s, the model was trained on 5 s" in line
    assert not (work / "s3.csv").exists()
    rc = main(["estimate", "--model", str(trained[0]), str(work / "three.csv"), "--out", str(work / "s3.csv"),
               "--ignore-declared"])
    assert rc == 0 and "3 of 3 rows declare another" in capsys.readouterr().err
    flagged = pd.read_csv(work / "s3.csv")
    assert flagged["declared_mismatch"].str.contains("declares 3 s, the model was trained on 5 s").all()


# --------------------------------------------------------------------------- 4. output locations, before any work


def _bad_locations(work: Path) -> dict[str, Path]:
    (work / "a_file.txt").write_text("not a folder\n")
    (work / "a_folder").mkdir(exist_ok=True)
    (work / "read_only").mkdir(exist_ok=True)
    (work / "read_only").chmod(0o555)
    return {"below_a_file": work / "a_file.txt" / "out.csv", "a_folder": work / "a_folder",
            "read_only": work / "read_only" / "sub" / "out.csv"}


COMMANDS = {  # command line before --out / --dest
    "train": ["train", "--battery", "LFP35", "--soc", "5", "25", "--generator", "interpolation", "--epochs", "1"],
    "estimate": ["estimate", "--model", "model.pt", "pulses.csv"],
    "extract-features": ["extract-features", "ws", "--soc", "5"],
    "reproduce": ["reproduce", "--battery", "LFP35", "--cases", "0", "--epochs", "1"],
    "fetch": ["fetch"],
}
EXPECTED = {"below_a_file": "cannot be created: {work}/a_file.txt is a file, not a folder",
            "a_folder": "is a folder; expected the name of a file to write",
            "a_file": "exists and is not a folder; expected a folder",
            "read_only": "cannot write in {work}/read_only (a read-only folder, mode 0555)"}


@pytest.mark.parametrize("command, kind", [("train", "below_a_file"), ("estimate", "a_folder"),
                                           ("extract-features", "read_only"), ("reproduce", "a_file"),
                                           ("fetch", "below_a_file")])
def test_4_bad_output_location_is_one_line_before_any_work(trained, pulses, work, data_dir, command, kind) -> None:
    where = _bad_locations(work) | {"a_file": work / "a_file.txt"}
    (work / "ws").mkdir(exist_ok=True)
    before = state(work)
    option = "--dest" if command == "fetch" else "--out"
    run = battgen(*COMMANDS[command], option, where[kind], cwd=work, data_dir=data_dir)
    assert f"battgen {command}: error: {option} {where[kind]}" in run.line
    assert EXPECTED[kind].format(work=work) in run.line
    assert state(work) == before
    (work / "read_only").chmod(0o755)


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["below_a_file", "a_folder", "read_only"])
def test_4_every_command_checks_every_kind_in_process(trained, pulses, work, data_dir, capsys, monkeypatch, command, kind):
    monkeypatch.chdir(work)
    monkeypatch.setenv("BATTGEN_DATA_DIR", str(data_dir))
    where = _bad_locations(work)
    (work / "ws").mkdir(exist_ok=True)
    if command in ("reproduce", "fetch") and kind == "a_folder":
        where[kind] = work / "a_file.txt"  # a folder is what these want: give them a file instead
    before = state(work)
    rc, line = in_process(capsys, *COMMANDS[command], "--dest" if command == "fetch" else "--out", where[kind])
    (work / "read_only").chmod(0o755)
    assert rc == 2 and str(where[kind]) in line
    assert state(work) == before


def test_4_train_and_extract_features_never_write_over_their_inputs(work, data_dir, lfp, capsys) -> None:
    lfp.head(30).to_csv(work / "train_rows.csv", index=False)
    (work / "ws4").mkdir()
    shutil.copyfile(data_dir / "workstep" / LMO_WS, work / "ws4" / LMO_WS)
    before = state(work)
    for args, role in [(("train", "--data", work / "train_rows.csv", "--soc", 5, 10, "--out", work / "train_rows.csv"),
                        "is the training data (--data) of this command"),
                       (("extract-features", work / "ws4", "--out", work / "ws4" / LMO_WS), "is a workstep file read"),
                       (("extract-features", work / "ws4" / LMO_WS, "--out", work / "ws4" / LMO_WS), "is a workstep file")]:
        rc, line = in_process(capsys, *args, "--force")
        assert rc == 2 and f"--out {args[-1]}: {role}" in line and "an input is never overwritten" in line
    assert state(work) == before


# --------------------------------------------------------------------------- 5. integrity of model files


def test_5_flipped_byte_in_the_training_rows_is_corruption(trained, pulses, work, data_dir) -> None:
    from battgen.estimator import SOHEstimator

    raw = bytearray(trained[0].read_bytes())
    values = (v.tobytes() for v in SOHEstimator.load(trained[0]).train_X_[10:].ravel())  # a stored training voltage
    value = next(v for v in values if raw.count(v) == 1)
    raw[raw.find(value) + 3] ^= 0x10
    (work / "flipped.pt").write_bytes(bytes(raw))
    before = state(work)
    run = battgen("estimate", "--model", "flipped.pt", "pulses.csv", "--out", "soh.csv", cwd=work, data_dir=data_dir)
    assert ("battgen estimate: error: flipped.pt: corrupt or modified file (its content does not match the checksum "
            "recorded in it: Bad CRC-32 for file 'train_X.npy')") in run.line
    assert "version" not in run.line
    assert state(work) == before
    # the same change written as a well-formed archive (its zip checksums recomputed) is caught by the sha256
    from battgen.estimator.persistence import read_payload, write_payload

    payload = read_payload(trained[0])
    payload["train_X"] = payload["train_X"].copy()
    payload["train_X"][10, 3] += 1e-9
    write_payload(payload, work / "edited.pt")
    run = battgen("estimate", "--model", "edited.pt", "pulses.csv", "--out", "soh.csv", cwd=work, data_dir=data_dir)
    assert ("battgen estimate: error: edited.pt: corrupt or modified file (its content does not match the sha256 "
            "recorded in it)") in run.line


def test_5_crafted_model_files_are_one_line(trained, pulses, work, data_dir, capsys) -> None:
    from battgen.estimator.persistence import read_payload, write_payload

    payload = read_payload(trained[0])
    write_payload({**payload, "extra": 1}, work / "unknown.pt")
    del payload["params"]
    write_payload(payload, work / "missing.pt")
    shutil.copyfile(pulses, work / "table.pt")
    for name, message in [("unknown.pt", "corrupt or modified file (entry 'extra' is unknown)"),
                          ("missing.pt", "corrupt or modified file (entry 'params' is missing)"),
                          ("table.pt", "not a battgen model file (written by `battgen train` / SOHEstimator.save): it "
                                       "is not a zip archive")]:
        rc, line = in_process(capsys, "estimate", "--model", work / name, pulses, "--out", work / "soh.csv")
        assert rc == 2 and f"{name}: {message}" in line
    assert not (work / "soh.csv").exists()


# --------------------------------------------------------------------------- 6. permissions, --force


def test_6_outputs_have_ordinary_permissions_and_need_force(trained, pulses, work, data_dir) -> None:
    assert trained[0].stat().st_mode & 0o777 == 0o666 & ~_umask()
    ws = work / "ws6"
    ws.mkdir()
    shutil.copyfile(data_dir / "workstep" / LMO_WS, ws / LMO_WS)
    args = ("extract-features", ws / LMO_WS, "--soc", 5, 10, "--out", "f.csv")
    first = battgen(*args, cwd=work, data_dir=data_dir, umask=0o027)
    assert first.rc == 0, first.err
    assert (work / "f.csv").stat().st_mode & 0o777 == 0o640  # 0o666 under umask 027, not mkstemp's 0o600
    before = state(work)
    again = battgen(*args[:-2], 15, "--out", "f.csv", cwd=work, data_dir=data_dir)
    assert "battgen extract-features: error: --out f.csv: exists; it is not replaced unless you pass --force" in again.line
    assert state(work) == before
    forced = battgen(*args[:-2], 15, "--out", "f.csv", "--force", cwd=work, data_dir=data_dir)
    assert forced.rc == 0 and list(pd.read_csv(work / "f.csv")["soc"]) == [0.05, 0.1, 0.15]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- 7. repeatable model files


def test_7_same_arguments_same_model_bytes(trained, work) -> None:
    assert trained[2].out.replace("again/other-name.pt", "model.pt") == trained[1].out.replace(
        trained[1].out.split(" in ")[-1].split(" s;")[0], trained[2].out.split(" in ")[-1].split(" s;")[0])
    assert (work / "again" / "other-name.pt").read_bytes() == trained[0].read_bytes()  # no file name, no time inside


# --------------------------------------------------------------------------- 8. messages that name the file and cause


def _xlsx(path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(FEATURES)
    wb.save(path)


@pytest.mark.parametrize("name, write, message", [
    ("empty.csv", lambda p: p.write_text(""), "empty.csv: the file is empty; expected a CSV file with a header line"),
    ("header.csv", lambda p: p.write_text(",".join(FEATURES) + "\n"), "header.csv: has a header but no data rows"),
    ("semi.csv", lambda p: p.write_text(";".join(FEATURES) + "\n" + ";".join(["3,7"] * 21) + "\n"),
     "semi.csv: columns are separated by semicolons (;), not commas"),
    ("book.csv", _xlsx, "book.csv: is an Excel workbook (.xlsx) or another zip archive, not a CSV file"),
])
def test_8_unreadable_pulses_name_file_and_cause(trained, work, data_dir, name, write, message) -> None:
    write(work / name)
    before = state(work)
    run = battgen("estimate", "--model", "model.pt", name, "--out", "soh.csv", cwd=work, data_dir=data_dir)
    assert f"battgen estimate: error: {message}" in run.line
    assert state(work) == before


@pytest.mark.parametrize("via, args, message", [
    ("sub", ("reproduce", "--seeds", "0", "-1"), "battgen reproduce: error: argument --seeds: '-1' is not a non-negative"),
    ("sub", ("train", "--soc", "5", "25", "--seed", "-1", "--out", "m.pt"), "argument --seed: '-1' is not a non-negative"),
    ("in", ("train", "--soc", "5", "25", "--epochs", "0", "--out", "m.pt"), "argument --epochs: '0' is not a positive"),
    ("in", ("reproduce", "--cases", "9"), "argument --cases: '9' is not a case number 0-7"),
    ("in", ("extract-features", "ws", "--soc", "7", "--out", "f.csv"), "argument --soc: '7' is not an SOC level of the"),
])
def test_8_option_errors_name_the_option(work, data_dir, cli, via, args, message) -> None:
    before = state(work)
    assert message in cli(via, *args, cwd=work, data_dir=data_dir).line
    assert state(work) == before


def test_8_extract_features_without_the_levels_writes_nothing(work, data_dir) -> None:
    (work / "earlier.csv").write_text("an earlier output\n")
    before = state(work)
    run = battgen("extract-features", data_dir / "workstep" / LMO_WS, "--soc", 60, 65, "--out", "earlier.csv", "--force",
                  cwd=work, data_dir=data_dir)
    assert (f"battgen extract-features: error: {data_dir / 'workstep' / LMO_WS}: no rows at SOC 60, 65 % for 5 s pulses "
            f"({LMO_WS}: SOC 60 % skipped: outside the planned range 5-55 % of this battery") in run.line
    assert run.line.endswith("nothing written")
    assert state(work) == before


# --------------------------------------------------------------------------- 9. blank rows in a workstep export


@pytest.fixture(scope="module")
def blanked(work: Path, data_dir: Path) -> dict[float, Path]:
    """Copies of the LMO workstep file with one step row blanked: of a 0.5 s pulse, and of a 5 s pulse (SOC 15 %)."""
    out = {}
    wb = openpyxl.load_workbook(data_dir / "workstep" / LMO_WS)
    ws = wb.worksheets[0]
    header = [c.value for c in ws[1]]
    i_loop, i_step = header.index("循环步骤号"), header.index("步次")
    for width, step in ((0.5, 109), (5.0, 190)):  # the rest after the +0.5 C pulse / the -0.5 C pulse, SOC loop 3
        (row,) = [r for r in ws.iter_rows(min_row=2) if r[i_loop].value == 3 and r[i_step].value == step]
        values = [cell.value for cell in row]
        for cell in row:
            cell.value = None
        folder = work / f"blank_{width:g}s"
        folder.mkdir()
        wb.save(folder / LMO_WS)
        out[width] = folder
        for cell, value in zip(row, values):
            cell.value = value
    return out


def test_9_blank_row_in_a_0_5s_pulse_loses_no_5s_pulse(blanked, work, data_dir) -> None:
    run = battgen("extract-features", blanked[0.5], "--out", "blank05.csv", cwd=work, data_dir=data_dir)
    assert run.rc == 0, run.err
    df = pd.read_csv(work / "blank05.csv")
    assert list(df["soc"]) == [s / 100 for s in range(5, 55, 5)]  # every 5 s pulse kept
    golden = pd.read_excel(data_dir / "workstep_features" / LMO_WS)
    np.testing.assert_allclose(df[FEATURES].to_numpy(), golden[FEATURES].to_numpy(), rtol=0, atol=1e-9)
    assert f"battgen extract-features: note: {LMO_WS}: row 514 is blank and skipped" in run.err.splitlines()
    assert "dropped" not in run.err


def test_9_blank_row_in_a_5s_pulse_drops_that_level_only(blanked, work, data_dir) -> None:
    run = battgen("extract-features", blanked[5.0], "--out", "blank5.csv", cwd=work, data_dir=data_dir)
    assert run.rc == 0, run.err
    assert list(pd.read_csv(work / "blank5.csv")["soc"]) == [0.05, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]
    assert (f"battgen extract-features: note: {LMO_WS}: SOC 15 % dropped: program step 190 (-0.5 C pulse (5 s)) is "
            "missing after row 594 (row 595 is blank)") in run.err.splitlines()


# --------------------------------------------------------------------------- every command, every error path


def test_fetch_dest_copies_keeps_identical_files_and_needs_force_for_others(data_dir, tmp_path, capsys) -> None:
    from battgen.data import REGISTRY

    dest = tmp_path / "mirror"
    assert main(["fetch", "--data-dir", str(data_dir), "--dest", str(dest)]) == 0
    copies = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(copies) == len(REGISTRY) and all(p.stat().st_mode & 0o777 == 0o666 & ~_umask() for p in copies)
    assert main(["fetch", "--data-dir", str(data_dir), "--dest", str(dest)]) == 0  # identical: kept, not an error
    copies[0].write_bytes(b"edited")
    capsys.readouterr()
    rc, line = in_process(capsys, "fetch", "--data-dir", data_dir, "--dest", dest)
    assert rc == 2 and line == f"battgen fetch: error: --dest {copies[0]}: exists; it is not replaced unless you pass --force"
    assert copies[0].read_bytes() == b"edited"
    assert main(["fetch", "--data-dir", str(data_dir), "--dest", str(dest), "--force"]) == 0
    assert copies[0].read_bytes() == (data_dir / copies[0].relative_to(dest)).read_bytes()
    assert main(["fetch", "--data-dir", str(data_dir), "--dest", str(data_dir)]) == 0  # the source itself: nothing to do


def test_train_data_file_is_read_with_one_line_errors(work, data_dir, capsys) -> None:
    (work / "semi_train.csv").write_text("U1;U2;soc;soh\n3,7;3,8;0,05;0,9\n")
    rc, line = in_process(capsys, "train", "--data", work / "semi_train.csv", "--soc", 5, 25, "--out", work / "m8.pt")
    assert rc == 2 and "semi_train.csv: columns are separated by semicolons (;), not commas" in line
    assert not (work / "m8.pt").exists()


def test_debug_shows_the_traceback_and_unexpected_errors_stay_one_line(work, data_dir, capsys, monkeypatch) -> None:
    assert main(["estimate", "--model", "m.pt", str(work / "nope.csv"), "--out", str(work / "o.csv"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.splitlines()[-1] == f"battgen estimate: error: {work / 'nope.csv'}: no such file"
    import battgen.io

    monkeypatch.setattr(battgen.io, "read_table", lambda *a, **k: None + 1)  # a bug, not bad input
    rc, line = in_process(capsys, "estimate", "--model", "m.pt", work / "nope.csv", "--out", work / "o.csv")
    assert rc == 2 and line.startswith("battgen estimate: error: unexpected TypeError: unsupported operand")
    assert line.endswith("(run again with --debug to see where)")
