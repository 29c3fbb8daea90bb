"""What PulseBat's test design encodes about SOH: the SOC cap and U1 at a nominal SOC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgen.data import load_pulsebat
from battgen.diagnostics import soc_cap, u1_soh_correlation


def _toy() -> pd.DataFrame:
    rows = []
    for i, soh in enumerate([0.6, 0.8, 1.0]):
        for soc in range(5, int(90 * soh) + 1, 5):  # tested up to ~90 % of the actual capacity
            rows.append({"battery": "T", "battery_id": f"b{i}", "soh": soh, "soc": soc / 100,
                         "U1": 3.4 + 0.5 * soc / 100 / soh})  # OCV rises with the true SOC = SOC / SOH
    return pd.DataFrame(rows)


def test_soc_cap_and_u1_on_a_toy_design() -> None:
    cap = soc_cap(_toy()).set_index("battery_id")
    assert cap["top_soc"].tolist() == [50, 70, 90] and cap["n_levels"].tolist() == [10, 14, 18]
    r = u1_soh_correlation(_toy()).set_index("soc")["r"]
    assert r.loc[25] == pytest.approx(-1.0, abs=0.1)  # lower SOH, higher true SOC, higher U1
    assert np.isnan(r.loc[75])  # only one battery reached 75 %


def test_on_pulsebat_the_cap_rises_with_soh_and_u1_tracks_soh_except_on_lfp(data_dir) -> None:
    lmo = load_pulsebat("LMO10", 3, data_dir=data_dir, max_soc=1.0)
    cap = soc_cap(lmo)
    assert np.corrcoef(cap["top_soc"], cap["soh"])[0, 1] > 0.8
    r5 = {b: u1_soh_correlation(load_pulsebat(b, data_dir=data_dir)).set_index("soc").loc[25, "r"]
          for b in ("LMO10", "LFP35")}
    assert r5["LMO10"] < -0.9 and abs(r5["LFP35"]) < 0.3
