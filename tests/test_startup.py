"""What the light commands and modules import: nothing heavy before it is needed (behaviour only, no timings).

torch costs 1.5-2 s to import, scikit-learn about 1 s and pandas 0.3 s; ``battgen --help``, ``import
battgen`` and the modules that only describe settings must not pay for them. Each check runs a fresh
interpreter and reads ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "sklearn", "matplotlib", "scipy")


def _loaded(code: str) -> dict[str, bool]:
    """Which of torch, sklearn, matplotlib, scipy and pandas a fresh interpreter has imported after ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {list(HEAVY) + ['pandas']}}}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_battgen_imports_nothing_heavy() -> None:
    assert not any(_loaded("import battgen").values())


def test_the_command_line_and_its_help_import_no_torch_or_sklearn() -> None:
    loaded = _loaded("import battgen.cli")
    assert not any(loaded[m] for m in HEAVY), loaded
    loaded = _loaded("import sys\nfrom battgen.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert not any(loaded[m] for m in HEAVY), loaded


def test_settings_scalers_and_generation_rules_need_no_torch() -> None:
    """Training settings, fitted-model containers and generation rules import without torch."""
    loaded = _loaded("import battgen.config, battgen.train, battgen.generate, battgen.data")
    assert not loaded["torch"] and not loaded["sklearn"], loaded


def test_the_settings_are_one_class_wherever_they_are_imported_from() -> None:
    import battgen.config
    import battgen.model
    import battgen.train

    assert battgen.model.CVAEConfig is battgen.config.CVAEConfig
    assert battgen.train.TrainConfig is battgen.config.TrainConfig


def test_lazy_package_attributes() -> None:
    import battgen
    from battgen.data import BATTERIES, load_pulsebat

    assert battgen.BATTERIES is BATTERIES and battgen.load_pulsebat is load_pulsebat
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        battgen.nope  # noqa: B018


def test_the_evaluation_core_and_the_estimator_import_without_torch() -> None:
    """The generator registry and the evaluation core import torch only to train or run a CVAE."""
    assert not _loaded("import battgen.evaluation.generators, battgen.evaluation.core, battgen.estimator")["torch"]
    assert not _loaded("import battgen.evaluation.paper, battgen.evaluation.leakfree")["torch"]


def test_the_evaluation_modules_and_the_metrics_import_scikit_learn_at_the_first_forest() -> None:
    """scikit-learn (and SciPy with it) is imported by the first forest, not by the modules that score."""
    loaded = _loaded("import battgen.evaluation, battgen.evaluation.unknown_soc, battgen.evaluation.learning_curves, "
                     "battgen.soh\nassert battgen.soh.mape([1.0, 2.0], [1.0, 1.0])[0] == 25.0")
    assert not loaded["sklearn"] and not loaded["scipy"], loaded
    assert _loaded("from battgen.soh import fit_forest\nfit_forest([[0.0], [1.0]], [0.0, 1.0])")["sklearn"]


def test_training_a_cvae_generating_and_saving_never_import_torch(tmp_path) -> None:
    """The trainer, the generation rules and a generator's file run on NumPy: torch only for the book's views."""
    code = ("import numpy as np\nfrom battgen.train import FittedCVAE, TrainConfig, fit_generator\n"
            "from battgen.generate import sample\n"
            "rng = np.random.default_rng(0)\nc = np.column_stack([rng.choice([0.05, 0.25], 40), rng.uniform(0.7, 1, 40)])\n"
            "x = 3.5 + 0.4 * c[:, :1] + 0.01 * rng.standard_normal((40, 21))\n"
            "fit = fit_generator(x, c, train_config=TrainConfig(epochs=2), progress=False)\n"
            f"again = FittedCVAE.load(fit.save({str(tmp_path / 'g.npz')!r}))\n"
            "rows, _ = sample(again, np.array([[0.5, 0.9]]), 3, seed=0)\nassert rows.shape == (3, 21)\n")
    loaded = _loaded(code)
    assert not loaded["torch"], loaded


def test_train_with_interpolation_and_estimate_never_import_torch(tmp_path) -> None:
    """The default estimator has no network: training it, saving it and estimating with it need no torch."""
    model, pulses, out = tmp_path / "m.pt", tmp_path / "p.csv", tmp_path / "o.csv"
    code = (f"from battgen.cli import main\nfrom battgen.data import load_pulsebat\n"
            f"load_pulsebat('NMC21').head(20).to_csv({str(pulses)!r}, index=False)\n"
            f"assert main(['train', '--battery', 'NMC21', '--soc', '5', '50', '--out', {str(model)!r}, '--no-progress']) == 0\n"
            f"assert main(['estimate', '--model', {str(model)!r}, {str(pulses)!r}, '--out', {str(out)!r}]) == 0")
    loaded = _loaded(code)
    assert not loaded["torch"], loaded
    assert out.is_file()


def test_the_command_line_runs_without_torch_installed(tmp_path) -> None:
    """torch is an extra (the book and the tests): without it, train with the paper's CVAE, estimate and reproduce run."""
    model, pulses, out, grid = tmp_path / "m.pt", tmp_path / "p.csv", tmp_path / "o.csv", tmp_path / "grid"
    code = ("import importlib.abc, sys\n\n"
            "class NoTorch(importlib.abc.MetaPathFinder):  # as if torch were not installed\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}')\n\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from battgen.cli import main\nfrom battgen.data import load_pulsebat\n"
            f"load_pulsebat('NMC21').head(20).to_csv({str(pulses)!r}, index=False)\n"
            f"assert main(['train', '--battery', 'NMC21', '--soc', '5', '25', '50', '--generator', 'cvae', '--epochs', '2', "
            f"'--out', {str(model)!r}, '--no-progress']) == 0\n"
            f"assert main(['estimate', '--model', {str(model)!r}, {str(pulses)!r}, '--out', {str(out)!r}]) == 0\n"
            f"assert main(['reproduce', '--battery', 'LMO10', '--cases', '1', '--epochs', '2', '--out', {str(grid)!r}, "
            "'--no-progress']) == 0\n")
    _loaded(code)  # fails on any import of torch
    assert out.is_file() and (grid / "results.csv").is_file()
