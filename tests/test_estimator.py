"""battgen.SOHEstimator: fit / predict without SOC, safe save and identical reload, input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import battgen
from battgen.data import FEATURES, load_pulsebat
from battgen.estimator import ESTIMATOR_GENERATORS, SOHEstimator, check_pulses, fit_estimators
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
    assert est.score(X, test["soh"]) < 0  # negative MAPE


def test_fit_with_arrays_equals_fit_with_a_table(data, fitted) -> None:
    train, test = data
    est = SOHEstimator(generator="interpolation", random_state=3).fit(
        train[FEATURES].to_numpy(), train["soh"].to_numpy(), soc=train["soc"].to_numpy(), groups=train["battery_id"].to_numpy())
    np.testing.assert_array_equal(est.predict(test[FEATURES]), fitted["interpolation"].predict(test[FEATURES]))


def test_same_random_state_same_model(data, fitted) -> None:
    train, test = data
    again = SOHEstimator(generator="residual", epochs=2, random_state=3).fit(train)
    np.testing.assert_array_equal(again.predict(test[FEATURES]), fitted["residual"].predict(test[FEATURES]))
    other = SOHEstimator(generator="residual", epochs=2, random_state=4).fit(train)
    assert not np.array_equal(other.train_X_, fitted["residual"].train_X_)


def test_every_random_stream_derives_from_random_state(fitted, data) -> None:
    """The one seed convention: the estimator's split key is (random_state,) (battgen.evaluation.split.derive_seed)."""
    assert fitted["interpolation"].forest_.random_state == derive_seed(3, "forest")
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
    payload = torch.load(path, weights_only=True)  # plain tensors, strings and numbers only
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


def test_tampered_or_foreign_files_are_refused(fitted, tmp_path: Path) -> None:
    path = fitted["interpolation"].save(tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["probe_pred"] = payload["probe_pred"] + 0.01
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not reproduce"):
        SOHEstimator.load(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a battgen SOHEstimator"):
        SOHEstimator.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        SOHEstimator.load(tmp_path / "missing.pt")


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
    with pytest.raises(RuntimeError, match="not fitted"):
        SOHEstimator().predict(X)
    with pytest.raises(ValueError, match="generator must be one of"):
        SOHEstimator(generator="gan").fit(data[0])
