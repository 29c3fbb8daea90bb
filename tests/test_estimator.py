"""battgen.SOHEstimator: fit / predict without SOC, safe save and identical reload, input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


import battgen
from battgen.data import FEATURES, load_pulsebat
from battgen.estimator import ESTIMATOR_GENERATORS, SOHEstimator, check_pulses, fit_estimators
from battgen.estimator.persistence import read_payload, write_payload
from battgen.evaluation.split import derive_seed

MEASURED = (5, 25, 50)


@pytest.fixture(scope="module")
def data(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = load_pulsebat("NMC21", data_dir=data_dir)
    cells = sorted(df["cell"].unique())
    test_cells = set(cells[::4])
    soc = np.rint(df["soc"] * 100).astype(int)
    train = df[~df["cell"].isin(test_cells) & np.isin(soc, MEASURED)]
    test = df[df["cell"].isin(test_cells)]
    return train, test


@pytest.fixture(scope="module")
def fitted(data) -> dict[str, SOHEstimator]:
    train, _ = data
    gens = ("residual", "cvae", "interpolation")
    ests = fit_estimators([SOHEstimator(generator=g, epochs=2, random_state=3) for g in gens], [train] * 3)
    return dict(zip(gens, ests))


def test_exported_from_the_package() -> None:
    assert battgen.SOHEstimator is SOHEstimator


def test_fit_covers_all_levels_and_predicts_without_soc(fitted, data) -> None:
    train, test = data
    est = fitted["residual"]
    assert est.measured_soc_ == list(MEASURED)
    assert est.generated_soc_ == [10, 15, 20, 30, 35, 40, 45]
    assert len(est.train_y_) == len(train) + 7 * train["battery_id"].nunique()
    X = test[FEATURES]  # no soc column
    pred = est.predict(X)
    assert pred.shape == (len(test),) and np.isfinite(pred).all()
    assert pred.min() >= train["soh"].min() - 1e-12 and pred.max() <= train["soh"].max() + 1e-12
    np.testing.assert_array_equal(est.predict(X.to_numpy()), pred)  # arrays work too
    assert est.score(X, test["soh"]) <= 1  # scikit-learn's R^2


def test_fit_with_arrays_equals_fit_with_a_table(data, fitted) -> None:
    train, test = data
    est = SOHEstimator(generator="interpolation", random_state=3).fit(
        train[FEATURES].to_numpy(), train["soh"].to_numpy(), soc=train["soc"].to_numpy(), battery_id=train["battery_id"].to_numpy())
    np.testing.assert_array_equal(est.predict(test[FEATURES]), fitted["interpolation"].predict(test[FEATURES]))


def test_same_random_state_same_model(data, fitted) -> None:
    train, test = data
    again = SOHEstimator(generator="residual", epochs=2, random_state=3).fit(train)
    np.testing.assert_array_equal(again.predict(test[FEATURES]), fitted["residual"].predict(test[FEATURES]))
    other = SOHEstimator(generator="residual", epochs=2, random_state=4).fit(train)
    assert not np.array_equal(other.train_X_, fitted["residual"].train_X_)


def test_every_random_stream_derives_from_random_state(fitted, data) -> None:
    """The one seed convention: the estimator's split key is (random_state,) (battgen.evaluation.split.derive_seed)."""
    assert fitted["interpolation"].regressor_.random_state == derive_seed(3, "forest")
    assert fitted["residual"].generator_.provenance["seed"] == derive_seed(3, "fit", "residual")
    assert fitted["cvae"].generator_.provenance["seed"] == derive_seed(3, "fit", "paper")
    assert fitted["interpolation"].generator_ is None
    train, test = data
    plain = SOHEstimator(generator="none", random_state=3).fit(train)
    assert plain.generated_soc_ == [] and plain.generator_ is None
    np.testing.assert_array_equal(plain.train_X_, train[FEATURES].to_numpy(float))  # the measured rows only
    assert "none" in ESTIMATOR_GENERATORS and ESTIMATOR_GENERATORS[0] == SOHEstimator().generator


@pytest.mark.parametrize("gen", ["residual", "cvae", "interpolation"])
def test_save_load_predicts_identically(fitted, data, tmp_path: Path, gen: str) -> None:
    _, test = data
    est = fitted[gen]
    path = est.save(tmp_path / "model.pt")
    payload = read_payload(path)  # arrays (numpy.load without pickle), strings and numbers only
    assert payload["format"] == "battgen.SOHEstimator"
    back = SOHEstimator.load(path)
    assert back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict(test[FEATURES]), est.predict(test[FEATURES]))
    if gen == "interpolation":
        assert back.generator_ is None
    else:
        z = np.zeros((3, 2))
        cond = np.array([[0.1, 0.9], [0.3, 0.95], [0.45, 1.0]])
        np.testing.assert_array_equal(back.generator_.decode(z, cond), est.generator_.decode(z, cond))


def _resave(payload: dict, path: Path, digest: bool = True) -> Path:
    """Write a crafted payload; with ``digest`` its sha256 is recomputed (a deliberate, consistent edit)."""
    import battgen.estimator as module

    if digest:
        payload["sha256"] = getattr(module, "persistence", module)._digest(payload)  # a module or a package
    write_payload(payload, path)
    return path


def test_same_model_same_bytes_and_ordinary_permissions(fitted, tmp_path: Path) -> None:
    import os

    est = fitted["residual"]
    a, b = est.save(tmp_path / "a.pt"), est.save(tmp_path / "sub" / "other-name.pt")
    assert a.read_bytes() == b.read_bytes()  # no file name inside the archive
    umask = os.umask(0o022)
    os.umask(umask)
    assert a.stat().st_mode & 0o777 == 0o666 & ~umask


def test_flipped_byte_in_the_training_rows_is_corruption(fitted, tmp_path: Path) -> None:
    est = fitted["interpolation"]
    path = est.save(tmp_path / "m.pt")
    raw = bytearray(path.read_bytes())
    value = est.train_X_[3, 5].tobytes()  # U6 of the fourth stored training row
    at = bytes(raw).find(value)
    assert at > 0 and bytes(raw).count(value) == 1
    raw[at + 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"m\.pt: corrupt or modified file \(its content does not match the checksum") as err:
        SOHEstimator.load(path)
    assert "version" not in str(err.value)
    payload = read_payload(est.save(tmp_path / "m2.pt"))  # the same edit in a well-formed archive: the sha256
    payload["train_X"] = payload["train_X"].copy()
    payload["train_X"][3, 5] += 1e-9
    with pytest.raises(ValueError, match=r"m3\.pt: corrupt or modified file \(its content does not match the sha256") as err:
        SOHEstimator.load(_resave(payload, tmp_path / "m3.pt", digest=False))
    assert "version" not in str(err.value)


def test_other_versions_are_named_only_when_they_differ(fitted, tmp_path: Path) -> None:
    import json

    path = fitted["interpolation"].save(tmp_path / "m.pt")
    payload = read_payload(path)
    versions = json.loads(payload["versions"])
    assert set(versions) == {"battgen", "scikit-learn", "numpy"}  # what a refit depends on (a CVAE is stored as weights)
    # a forest that refits differently with the same versions: the file was edited
    changed = dict(payload, probe_pred=payload["probe_pred"] + 0.01)
    with pytest.raises(ValueError, match="corrupt or modified file.*same versions") as err:
        SOHEstimator.load(_resave(changed, tmp_path / "edited.pt"))
    assert "other version" not in str(err.value)
    # ... with another scikit-learn: blamed on the version, which is named
    old = dict(changed, versions=json.dumps({**versions, "scikit-learn": "0.0.1"}))
    with pytest.raises(ValueError, match=r"another version: scikit-learn 0\.0\.1 \(this is ") as err:
        SOHEstimator.load(_resave(old, tmp_path / "old.pt"))
    assert "corrupt" not in str(err.value)
    # another version whose forest still refits bit for bit loads fine
    fine = dict(payload, versions=json.dumps({**versions, "battgen": "0.0.0"}))
    back = SOHEstimator.load(_resave(fine, tmp_path / "fine.pt"))
    np.testing.assert_array_equal(back.train_X_, fitted["interpolation"].train_X_)


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.pop("train_y"), "corrupt or modified file (entry 'train_y' is missing)"),
    (lambda p: p.update(extra=np.zeros(1)), "corrupt or modified file (entry 'extra' is unknown)"),
    (lambda p: p.update(params='{"generator": "interpolation", "colour": 3}'), "corrupt or modified file (TypeError"),
    (lambda p: p.update(train_X=p["train_X"][:, :20]), "shapes do not fit together"),
    (lambda p: p.update(format_version=1), "model file format 1 of another version of battgen"),
    (lambda p: p.update(format="something.else"), "not a battgen model file"),
])
def test_crafted_files_are_one_clear_error(fitted, tmp_path: Path, edit, message: str) -> None:
    payload = read_payload(fitted["interpolation"].save(tmp_path / "m.pt"))
    edit(payload)
    with pytest.raises(ValueError) as err:
        SOHEstimator.load(_resave(payload, tmp_path / "crafted.pt", digest="sha256" in payload and "extra" not in payload))
    assert message in str(err.value) and "crafted.pt" in str(err.value)


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    write_payload({"weights": np.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a battgen model file"):
        SOHEstimator.load(tmp_path / "other.pt")
    (tmp_path / "table.pt").write_text("U1,U2\n3.7,3.8\n")
    with pytest.raises(ValueError, match="table.pt: not a battgen model file .*: it is not a zip archive"):
        SOHEstimator.load(tmp_path / "table.pt")
    with pytest.raises(FileNotFoundError):
        SOHEstimator.load(tmp_path / "missing.pt")


def test_the_model_records_design_and_pulse_width_and_refuses_other_ones(fitted, data, tmp_path: Path) -> None:
    _, test = data
    est = SOHEstimator.load(fitted["interpolation"].save(tmp_path / "m.pt"))
    assert est.design_ == fitted["interpolation"].design_ == {"battery": "NMC21", "pulse_width_s": 5.0}
    rows = test.head(4).reset_index(drop=True)
    np.testing.assert_array_equal(est.predict(rows), est.predict(rows[FEATURES]))  # matching declarations pass
    other = rows.assign(battery=["NMC21", "LFP35", "LMO 10 Ah", None])
    with pytest.raises(ValueError, match=r"input: row 3: column 'battery' declares LFP35, the model was trained on "
                                         r"NMC21 \(and 1 more row\); refusing"):
        est.predict(other)
    with pytest.raises(ValueError, match=r"row 2: column 'pulse_width_s' declares 3 s, the model was trained on 5 s"):
        est.predict(rows.assign(pulse_width_s=3.0))
    custom = SOHEstimator(generator="none").fit(rows[FEATURES].to_numpy(), rows["soh"], soc=rows["soc"])
    assert custom.design_ == {"battery": "custom", "pulse_width_s": "custom"}
    assert np.isfinite(custom.predict(other)).all()  # a custom model cannot tell: nothing is refused


def test_bad_input_names_the_row(fitted, data) -> None:
    _, test = data
    est = fitted["interpolation"]
    X = test[FEATURES].reset_index(drop=True)
    with pytest.raises(ValueError, match=r"missing column\(s\) U3, U9"):
        est.predict(X.drop(columns=["U3", "U9"]))
    mv = X.copy()
    mv.loc[4, "U2"] = mv.loc[4, "U2"] * 1000
    with pytest.raises(ValueError, match=r"'U2', row 6.*millivolts"):
        est.predict(mv)
    nan = X.copy()
    nan.loc[0, "U21"] = np.nan
    with pytest.raises(ValueError, match=r"'U21', row 2.*NaN"):
        check_pulses(nan)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):  # scikit-learn's convention (a ValueError)
        SOHEstimator().predict(X)
    with pytest.raises(ValueError, match="generator must be one of"):
        SOHEstimator(generator="gan").fit(data[0])


@pytest.mark.parametrize("method", ["invariant_ensemble", "soc_then_soh"])
def test_an_invariant_regressor_is_chapter_07s_estimator(data, method: str, tmp_path: Path) -> None:
    """SOHEstimator(regressor=m, random_state=r) predicts what chapter 07 scores for m with the same seed."""
    from battgen.invariant_estimator import InvariantEstimator

    train, test = data
    est = SOHEstimator(regressor=method, calibration_folds=0, random_state=7).fit(train)
    direct = InvariantEstimator(method, random_state=7).fit(train)
    np.testing.assert_array_equal(est.predict(test[FEATURES]), direct.predict(test))
    back = SOHEstimator.load(est.save(tmp_path / "m.pt"))  # refitted from the stored measured rows, bit for bit
    np.testing.assert_array_equal(back.predict(test[FEATURES]), est.predict(test[FEATURES]))
    assert back.get_params() == est.get_params()


def test_invariant_regressors_take_the_interpolation_generator_and_pulses(data) -> None:
    train, _ = data
    with pytest.raises(ValueError, match="regressor 'invariant_ridge' interpolates each battery's pulses in SOC itself"):
        SOHEstimator(regressor="invariant_ridge", generator="cvae").fit(train)
    with pytest.raises(ValueError, match="regressor must be one of"):
        SOHEstimator(regressor="boosting").fit(train)
    with pytest.raises(ValueError, match="needs U1..U21 in volts with the SOC"):
        SOHEstimator(regressor="invariant_forest").fit(np.random.default_rng(0).normal(size=(20, 3)), np.ones(20))
