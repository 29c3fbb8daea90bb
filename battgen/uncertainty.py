"""What an SOH estimate cannot promise: prediction intervals, and pulses unlike the training data.

**Intervals** (:func:`conformal_quantile`, :func:`interval`): split-conformal, grouped by battery.
The calibration scores are absolute errors ``|SOH - estimate|`` of models that never saw the
battery they score (its physical cell was held out), so a new battery's error is exchangeable
with them at the battery level. With ``n`` scores, the half-width at coverage ``c`` is the
``ceil((n + 1) c)``-th smallest score: under exchangeability the interval covers a new pulse's
SOH with probability at least ``c`` (Vovk et al. 2005; Lei et al. 2018). Rows of one battery are
not independent, so the guarantee is approximate; :mod:`battgen.evaluation` measures the
coverage on held-out batteries rather than trusting it.

**Novelty** (:class:`NoveltyScore`): the distance of a standardised pulse (U1..U21) to its
``k``-th nearest training pulse. Its alarm threshold is set on the training batteries themselves:
each battery is scored against all the others (grouped, so a battery never vouches for itself)
and the threshold is the conformal quantile at ``1 - false_alarm`` (the largest of them when
there are fewer than ``1 / false_alarm``): a new battery of the same
design is flagged with probability about ``false_alarm``; a pulse from another design, a
different pulse width or a broken measurement lies far from every training pulse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["conformal_quantile", "interval", "pulse_shape", "NoveltyScore"]


def conformal_quantile(scores: Sequence[float], coverage: float) -> float:
    """The ``ceil((n + 1) * coverage)``-th smallest of ``n`` scores (``inf`` when ``n`` is too small)."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be between 0 and 1 (exclusive), got {coverage!r}")
    s = np.sort(np.asarray(scores, dtype=float)[np.isfinite(scores)])
    k = math.ceil((len(s) + 1) * coverage)
    return float(s[k - 1]) if 1 <= k <= len(s) else math.inf


def interval(estimate: np.ndarray, scores: Sequence[float], coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``: ``estimate`` -/+ the conformal quantile of the calibration ``scores``."""
    q = conformal_quantile(scores, coverage)
    estimate = np.asarray(estimate, dtype=float)
    return estimate - q, estimate + q


def pulse_shape(X: np.ndarray) -> np.ndarray:
    """U1 and the differences ``U_k - U1`` (k = 2..21), (n, 21): the rest voltage and the pulse's own
    shape (its ohmic and polarisation drops), which differ between designs more than the raw
    voltages do (different chemistries overlap in voltage)."""
    X = np.asarray(X, dtype=float)
    return np.hstack([X[:, :1], X[:, 1:] - X[:, :1]])


@dataclass
class NoveltyScore:
    """Distance of a pulse to the training pulses, and the threshold above which it is flagged."""

    k: int = 5  # the k-th nearest training pulse
    false_alarm: float = 0.01  # share of a new same-design battery's pulses flagged

    def fit(self, X: np.ndarray, groups: Sequence, X_extra: np.ndarray | None = None) -> "NoveltyScore":
        """Reference pulses ``X`` (n, F) of the training batteries ``groups``, plus ``X_extra`` (rows of
        no battery, e.g. generated ones, always in the reference set); sets :attr:`threshold_`."""
        X = np.asarray(X, dtype=float)
        groups = np.asarray(groups)
        if X.ndim != 2 or len(X) != len(groups):
            raise ValueError(f"X must be (n, F) with one group per row, got {X.shape} and {groups.shape}")
        extra = self._reference(X, X_extra)
        own = np.concatenate([groups.astype(object), np.full(len(extra), None, dtype=object)])
        # one neighbour query for every battery at once: ask for enough neighbours to skip the
        # battery's own rows, then keep the k-th nearest row of another battery (or of no battery)
        size = max(np.unique(groups, return_counts=True)[1]) if len(groups) else 0
        dist, idx = self._neighbours(self._standardise(X), self.reference_, self.k + size)  # (n, k + size)
        foreign = own[idx] != groups[:, None]  # (n, k + size)
        rank = np.cumsum(foreign, axis=1)  # how many foreign neighbours up to each column
        hit = (rank == self.k) & foreign
        self.calibration_ = np.where(hit.any(axis=1), dist[np.arange(len(X)), hit.argmax(axis=1)], math.inf)
        self.threshold_ = conformal_quantile(self.calibration_, 1.0 - self.false_alarm)
        if not np.isfinite(self.threshold_) and len(self.calibration_):
            # fewer than 1 / false_alarm scores: the largest held-out score (a false-alarm rate of
            # at most 1 / (n + 1) under exchangeability, instead of one that nothing could exceed)
            self.threshold_ = float(np.max(self.calibration_))
        return self

    def _reference(self, X: np.ndarray, X_extra: np.ndarray | None) -> np.ndarray:
        """Standardise by ``X`` (the measured pulses) and keep ``X`` and ``X_extra`` as the reference; returns the extra rows."""
        extra = np.zeros((0, X.shape[1])) if X_extra is None else np.asarray(X_extra, dtype=float)
        self.center_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        self.reference_ = self._standardise(np.vstack([X, extra]))  # (n + m, F)
        return extra

    @classmethod
    def restored(cls, k: int, false_alarm: float, X: np.ndarray, X_extra: np.ndarray | None, threshold: float) -> "NoveltyScore":
        """A fitted score from its reference pulses and a stored threshold (a saved model: recomputing the
        threshold would need the training batteries' groups, which the model file does not keep)."""
        nov = cls(k, false_alarm)
        nov._reference(np.asarray(X, dtype=float), X_extra)
        nov.threshold_ = float(threshold)
        return nov

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=float) - self.center_) / self.scale_

    @staticmethod
    def _neighbours(Z: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """RMS distances (over features) and indices of the ``k`` nearest reference rows of each row of ``Z``."""
        from sklearn.neighbors import NearestNeighbors

        k = min(k, len(reference))
        if k == 0:
            return np.zeros((len(Z), 0)), np.zeros((len(Z), 0), dtype=int)
        dist, idx = NearestNeighbors(n_neighbors=k, algorithm="kd_tree").fit(reference).kneighbors(Z)
        return dist / math.sqrt(Z.shape[1]), idx

    def _distance(self, Z: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Distance of each row of ``Z`` to its k-th nearest row of ``reference`` (RMS over features)."""
        dist, _ = self._neighbours(Z, reference, self.k)
        return dist[:, -1] if dist.shape[1] else np.full(len(Z), math.inf)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Novelty of each pulse: RMS standardised distance to its k-th nearest training pulse."""
        if not hasattr(self, "reference_"):
            raise RuntimeError("NoveltyScore is not fitted")
        return self._distance(self._standardise(X), self.reference_)

    def flag(self, X: np.ndarray) -> np.ndarray:
        """``True`` where a pulse is unlike the training pulses (score above the threshold)."""
        return self.score(X) > self.threshold_
