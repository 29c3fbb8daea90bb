"""SOH estimation: the paper's random forest and the error metric.

scikit-learn, which brings SciPy, is imported when the first forest is made, not with this
module: the metrics and the modules that import them stay light.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from battgen.config import usable_cores

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestRegressor

__all__ = ["make_forest", "fit_forest", "PaperForest", "mape", "absolute_percentage_errors", "FOREST_PARAMS"]

FOREST_PARAMS = dict(n_estimators=20, max_depth=64, min_samples_leaf=1, bootstrap=False)
"""The paper's regressor settings (the authors' code leaves random_state unset; battgen fixes it)."""


def make_forest(random_state: int | None = 0, n_jobs: int | None = None) -> RandomForestRegressor:
    """``RandomForestRegressor(n_estimators=20, max_depth=64, min_samples_leaf=1, bootstrap=False)``.

    Without bootstrap and with every feature tried at each split, the 20 trees differ only
    where two candidate splits tie (scikit-learn visits features in a random order), so the
    forest is close to one deep tree; ``random_state`` fixes those tie-breaks.
    """
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(**FOREST_PARAMS, random_state=random_state, n_jobs=n_jobs)


class PaperForest:
    """The trees of ``make_forest(random_state).fit(X, y)``, fitted without scikit-learn's per-tree overhead.

    scikit-learn builds each of the 20 trees by cloning a template and setting its parameters
    through signature inspection, which costs more than fitting the tree on PulseBat's few hundred
    rows (the grid fits ~450 forests: ~4 s of its ~11 s in forests). This class draws the trees'
    seeds exactly as :class:`~sklearn.ensemble.RandomForestRegressor` does, fits each tree the way
    the forest does (``DecisionTreeRegressor._fit`` on the same float32 rows, no bootstrap) and
    averages the trees' predictions in tree order, so :meth:`predict` equals the forest's
    ``predict`` bit for bit (``tests/test_soh.py`` holds it). The trees are fitted in ``threads``
    threads (the tree builder releases the GIL; each tree is independent, so the threads change
    nothing but the wall time).
    """

    def __init__(self, random_state: int | None = 0, threads: int | None = None) -> None:
        self.random_state = random_state
        self.threads = threads

    def fit(self, X: np.ndarray, y: np.ndarray) -> "PaperForest":
        """Fit the 20 trees on ``X (n, d)`` and ``y (n,)``."""
        from sklearn.tree import DecisionTreeRegressor
        from sklearn.utils import check_array

        template = make_forest(self.random_state)
        X = check_array(X, dtype=np.float32, ensure_all_finite=False)  # as the forest's validate_data
        y = np.ascontiguousarray(np.reshape(np.asarray(y), (-1, 1)), dtype=np.float64)  # (n, 1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        params = {p: getattr(template, p) for p in template.estimator_params if p != "random_state"}
        missing = DecisionTreeRegressor(criterion=template.criterion)._compute_missing_values_in_feature_mask(
            X, estimator_name=type(template).__name__)
        rng = np.random.RandomState(self.random_state) if self.random_state is not None else np.random.mtrand._rand
        # one draw per tree, in order, as sklearn.ensemble._base._set_random_states
        trees = [DecisionTreeRegressor(**params, random_state=rng.randint(np.iinfo(np.int32).max))
                 for _ in range(template.n_estimators)]

        def grow(tree: DecisionTreeRegressor) -> DecisionTreeRegressor:
            seed = tree.random_state
            tree.random_state = _reseeded(seed)  # what check_random_state(seed) returns, without building it anew
            try:
                return tree._fit(X, y, sample_weight=None, check_input=False, missing_values_in_feature_mask=missing)
            finally:
                tree.random_state = seed

        workers = min(len(trees), self.threads or usable_cores())
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                self.estimators_ = list(pool.map(grow, trees))
        else:
            self.estimators_ = [grow(t) for t in trees]
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean of the trees' predictions (summed in tree order, then divided, as the forest does), ``(n,)``."""
        from sklearn.utils import check_array

        X = check_array(X, dtype=np.float32, ensure_all_finite=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the forest was fitted on {self.n_features_in_}")
        y_hat = np.zeros(X.shape[0], dtype=np.float64)
        for tree in self.estimators_:
            y_hat += tree.tree_.predict(X)[:, 0]  # DecisionTreeRegressor.predict of one output, without its checks
        y_hat /= len(self.estimators_)
        return y_hat


_GENERATORS = threading.local()


def _reseeded(seed: int) -> np.random.RandomState:
    """This thread's RandomState, reseeded with ``seed``: the state of ``np.random.RandomState(seed)``.

    Building a RandomState costs ~0.1 ms (its bit generator first seeds itself from the OS), a
    quarter of a tree's fit on PulseBat's rows; reseeding one costs ~2 us. One per thread, as a
    tree's builder draws from it while it grows.
    """
    generator = getattr(_GENERATORS, "generator", None)
    if generator is None:
        generator = _GENERATORS.generator = np.random.RandomState(0)
    generator.seed(seed)
    return generator


_FAST_SKLEARN = ((1, 6), (1, 10))
"""scikit-learn releases (from, before) whose private tree API :class:`PaperForest` calls (written against 1.9;
``tests/test_soh.py`` checks it on the installed one). Others get scikit-learn's own forest, which
predicts the same, only slower."""


@lru_cache(maxsize=None)
def fast_forest_available() -> bool:
    """Whether :class:`PaperForest` may be used with the installed scikit-learn (see :data:`_FAST_SKLEARN`)."""
    from sklearn import __version__
    from sklearn.tree import DecisionTreeRegressor

    try:
        release = tuple(int(part) for part in __version__.split(".")[:2])
    except ValueError:
        return False
    return _FAST_SKLEARN[0] <= release < _FAST_SKLEARN[1] and hasattr(DecisionTreeRegressor, "_fit")


def fit_forest(X: np.ndarray, y: np.ndarray, random_state: int | None = 0,
               threads: int | None = None) -> PaperForest | RandomForestRegressor:
    """The paper's forest fitted on ``X, y``: predictions equal to ``make_forest(random_state).fit(X, y)``'s
    bit for bit, in a fraction of the time (:class:`PaperForest`; scikit-learn's forest itself on releases
    whose private tree API it was not written for)."""
    if not fast_forest_available():
        return make_forest(random_state, n_jobs=threads).fit(X, y)
    return PaperForest(random_state, threads).fit(X, y)


def absolute_percentage_errors(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``|y_true - y_pred| / |y_true| * 100`` per sample."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred shapes differ: {y_true.shape} vs {y_pred.shape}")
    if np.any(y_true == 0):
        raise ValueError("MAPE is undefined where y_true is 0")
    return np.abs((y_true - y_pred) / y_true) * 100.0


def mape(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """Mean absolute percentage error (%) and the standard deviation of the absolute percentage errors."""
    ape = absolute_percentage_errors(y_true, y_pred)
    return float(ape.mean()), float(ape.std())
