"""What measuring fewer SOC levels saves: energy, money, CO2 and tester time, rebuilt in the open.

Tao et al. (2024) state that generating the unmeasured SOC levels "would save 4.9 billion USD in
electricity costs and 35.8 billion kg CO2 emissions ... for a 2030 worldwide battery retirement
scenario", without publishing the parameter values behind the figure. battgen rebuilds the
estimate from two ingredients kept strictly apart:

* **Measured**: what one SOC level of the PulseBat protocol costs a real battery, read from the
  two workstep-layer files (per-step charge/discharge energy in Wh, capacity in Ah, duration).
  One level is a 1C conditioning charge for 3 min (5 % of nominal capacity), a 10-minute rest and
  the pulse sequence (10 widths x 5 amplitudes, +/- pulse each, rests of 15x the width).
  :func:`measure_level_cost` returns one row per SOC level.
* **Assumed or sourced**: everything else, gathered in :class:`EconomicParameters`, one field per
  parameter, each a :mod:`pint` quantity with its unit, a source (or the label *assumption*) and a
  plausible low/high range for the sensitivity chart.

How the measurements are scaled to other designs. The protocol fixes C-rates and the 5 % SOC step,
so the charge moved per level is proportional to the nominal capacity (both files move 0.072 Ah
per Ah of nominal capacity per level). The energy is that charge times the battery's voltage, so
it is expressed **per Ah of nominal capacity per 5 % SOC level** (Wh/Ah) and multiplied by the
capacity of the battery in question; the voltage is the one of the measured chemistry (LMO and
NMC are measured; pooling both gives the generic retired battery). The tester time per level does
not depend on capacity (fixed C-rates, fixed step durations).

Grid energy for one battery at one level::

    E_grid = E_in / charger_efficiency - discharge_recovery * charger_efficiency * E_out
             + standby_power * tester_time

where ``E_in``/``E_out`` are the measured energies into/out of the battery. A case saves the
levels it does not measure: ``10 - len(train_soc)`` levels per battery, and :func:`savings` is
linear in the number of batteries.

The estimate lives in four modules, one concern each; this module gathers their public names so
that ``from battgen.economics import X`` (and ``battgen.economics as ec``) reaches all of them:

* :mod:`battgen.economics.params`: units (``ureg``, ``Q_``) and :class:`EconomicParameters`;
* :mod:`battgen.economics.measured`: :func:`measure_level_cost`, :func:`calibrated_capacity`,
  :class:`LevelCost` (read through :mod:`battgen.workstep`; protocol from :mod:`battgen.protocol`);
* :mod:`battgen.economics.model`: :func:`cost_per_level`, :func:`savings`, :func:`scenario`, ...;
* :mod:`battgen.economics.paper`: :func:`reproduce_paper`, :func:`sensitivity` and the paper's figures.
"""

from __future__ import annotations

from battgen.economics.measured import LevelCost, calibrated_capacity, measure_level_cost
from battgen.economics.model import (
    Savings,
    case_table,
    cost_per_level,
    design_costs,
    levels_saved,
    savings,
    savings_curve,
    scenario,
    time_saved_per_battery,
)
from battgen.economics.paper import PAPER_KG_CO2, PAPER_KG_PER_USD, PAPER_USD, reproduce_paper, sensitivity
from battgen.economics.params import Q_, EconomicParameters, ureg
from battgen.protocol import ALL_SOC

__all__ = [
    "ureg", "Q_", "PAPER_USD", "PAPER_KG_CO2", "PAPER_KG_PER_USD", "SOC_LEVELS", "EconomicParameters",
    "LevelCost", "Savings", "calibrated_capacity", "measure_level_cost", "levels_saved", "case_table",
    "cost_per_level", "design_costs", "savings", "scenario", "savings_curve", "time_saved_per_battery",
    "reproduce_paper", "sensitivity",
]

SOC_LEVELS: tuple[int, ...] = ALL_SOC
"""The ten SOC levels (%) of the paper's dataset: :data:`battgen.protocol.ALL_SOC` under the name chapter 05 uses."""
