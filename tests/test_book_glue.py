"""battgen.book.glue: the two helpers of the old battgen.analysis that the chapters still use.

(The profile checks of the old ``analysis.train_config`` live in tests/test_book.py:
``test_profile_train_config_and_runner_parameters`` and ``test_an_unknown_profile_is_named_in_the_error``.)
"""

from __future__ import annotations

from battgen.book import and_join, counted, glue_key, source_block
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
