"""battgen.book.glue: the two helpers of the old battgen.analysis that the chapters still use.

(The profile checks of the old ``analysis.train_config`` live in tests/test_book.py:
``test_profile_train_config_and_runner_parameters`` and ``test_an_unknown_profile_is_named_in_the_error``.)
"""

from __future__ import annotations

from battgen.book import and_join, counted, glue_key, percent, readable, source_block, type_list
from battgen.model import CVAE, loss_terms


def test_glue_keys_are_safe_names():
    assert [glue_key(b) for b in ("NMC2.1", "LMO10", "NMC 21 Ah", "lfp")] == ["nmc2_1", "lmo10", "nmc21", "lfp35"]


def test_source_block_shows_the_real_code():
    block = source_block(CVAE.reparameterize)
    assert block.startswith("```python\n# battgen.model.CVAE.reparameterize, line ")
    assert "def reparameterize(mu" in block and block.endswith("\n```")
    assert "\n    @staticmethod" not in block  # dedented
    # the loss the chapters display as "the loss battgen trains with"
    assert "def loss_terms(cfg" in source_block(loss_terms) and "# battgen.loss.loss_terms, line " in source_block(loss_terms)


def test_counts_and_lists_read_as_prose():
    assert [counted(n, "seed") for n in (0, 1, 3)] == ["0 seeds", "1 seed", "3 seeds"]
    assert counted(2, "battery", "batteries") == "2 batteries" and counted(1, "battery", "batteries") == "1 battery"
    assert [and_join(x) for x in ([], ["a"], ["a", "b"], ("a", "b", "c"))] == ["", "a", "a and b", "a, b and c"]
    assert and_join(i for i in (1, 2)) == "1 and 2"
    assert type_list(["LMO10"]) == "LMO 10 Ah" and type_list(x for x in ("nmc2.1", "LFP35")) == "NMC 2.1 Ah and LFP 35 Ah"


def test_readable_writes_small_numbers_as_powers_of_ten():
    assert readable(3.4e-5) == "3.4 × 10⁻⁵"
    assert readable(4.440892098500626e-16) == "4.4 × 10⁻¹⁶"
    assert readable(-2e-3) == "-2.0 × 10⁻³"
    assert readable(0.0123) == "0.012" and readable(1.5) == "1.5" and readable(250.4) == "250"
    assert readable(0) == "0" and readable(float("nan")) == "nan"


def test_percent_writes_a_share_as_the_prose_does():
    assert percent(0.953) == "95 %" and percent(0.0123, 1) == "1.2 %" and percent(1) == "100 %"
