"""battgen.protocol: the physical test program against the numbers of the PulseBat README (SOURCES.md)."""

from __future__ import annotations

import math

import pytest

from battgen import economics as ec
from battgen import protocol as p


def test_program_constants_match_the_dataset_description():
    # SOURCES.md: 5 calibration steps, then per SOC level 2 conditioning steps followed by
    # 10 pulse widths x 5 amplitudes (0.5-2.5 C) x 4 steps
    assert p.CALIBRATION_STEPS == 5 and p.CALIBRATION[p.CALIBRATION_DISCHARGE] == "discharge"
    assert p.PULSE_WIDTHS_S == (0.03, 0.05, 0.07, 0.1, 0.3, 0.5, 0.7, 1.0, 3.0, 5.0)
    assert p.AMPLITUDES_C == (0.5, 1.0, 1.5, 2.0, 2.5)
    assert (p.CONDITIONING_STEPS, p.PULSE_STEPS, p.WIDTH_STEPS, p.LEVEL_STEPS) == (2, 4, 20, 202)
    assert p.ALL_SOC == tuple(range(5, 55, 5)) and ec.SOC_LEVELS == p.ALL_SOC


def test_conditioning_charge_moves_one_soc_step():
    charge, rest = p.CONDITIONING
    assert charge.c_rate * charge.duration_s / 3600 * 100 == pytest.approx(p.SOC_STEP_PCT)
    assert (charge.kind, rest.kind, rest.duration_s) == ("charge", "rest", 600.0)


def test_level_program_order_and_durations():
    prog = p.LEVEL_PROGRAM
    assert [s.pos for s in prog] == list(range(p.LEVEL_STEPS))
    assert all(math.isnan(s.width_s) for s in prog[:2])
    first = prog[2:6]
    assert [(s.kind, s.c_rate, s.duration_s) for s in first] == [
        ("charge", 0.5, 0.03), ("rest", 0.0, 0.03 * 15), ("discharge", -0.5, 0.03), ("rest", 0.0, 0.03 * 15)]
    assert [s.width_s for s in prog[2::p.WIDTH_STEPS]] == list(p.PULSE_WIDTHS_S)
    assert sum(s.c_rate * s.duration_s for s in prog[2:]) == pytest.approx(0)  # pulses are charge-neutral
    # step time of one level: 3 min + 10 min + per width 5 amplitudes x 2 x (pulse + 15 x pulse)
    assert sum(s.duration_s for s in prog) == pytest.approx(180 + 600 + 5 * 2 * 16 * sum(p.PULSE_WIDTHS_S))


def test_pulse_group_any_width_and_soc_loops():
    group = p.pulse_group(2.0, start=7)
    assert len(group) == p.WIDTH_STEPS and group[0].pos == 7 and group[1].duration_s == 30.0
    assert group[0].what == "+0.5 C pulse (2 s)"
    assert [p.soc_loop(s) for s in p.ALL_SOC] == list(range(1, 11))
    assert [p.loop_soc(k) for k in range(1, 11)] == list(p.ALL_SOC)
    assert p.loop_soc(p.soc_loop(55, 5), 5) == 55
