"""battgen: generative learning assisted SOH estimation for retired batteries (Tao et al., 2024)."""

from battgen.data import BATTERIES, FEATURES, load_pulsebat

from battgen._version import __version__
__all__ = ["BATTERIES", "FEATURES", "SOHEstimator", "load_pulsebat", "__version__"]


def __getattr__(name: str):
    # SOHEstimator needs torch: import it on first use, so `import battgen` stays light
    if name == "SOHEstimator":
        from battgen.estimator import SOHEstimator

        return SOHEstimator
    raise AttributeError(f"module 'battgen' has no attribute {name!r}")
