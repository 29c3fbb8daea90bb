"""Splits and the one seed convention."""

from __future__ import annotations

import zlib

__all__ = ["derive_seed"]


def derive_seed(*parts: object) -> int:
    """A stable seed in ``[0, 2**32)`` from ``parts``: the CRC-32 of their ``repr``.

    The seed convention of every protocol in battgen, documented here once:

    - a split is identified by its key ``(battery, case, fold, seed)`` (``fold`` is ``None`` in
      the paper's protocol, which has no folds); each random stream of the split is seeded with
      ``derive_seed(*key, stream)``: ``"fit", <fit name>`` for a generator's training
      (initialisation, shuffling, reparameterisation noise), ``<generator name>`` for its
      sampling and ``"forest"`` for every forest scored on the split;
    - the grouped folds of a battery type and seed are dealt with ``derive_seed(battery, seed, "folds")``;
    - :class:`battgen.estimator.SOHEstimator` uses the key ``(random_state,)``.

    CRC-32 of the ``repr`` (not :func:`hash`) gives the same seed in every process and on every
    machine; the range fits numpy, torch and scikit-learn alike.
    """
    return zlib.crc32(repr(parts).encode())
