"""battgen: generative learning assisted SOH estimation for retired batteries (Tao et al., 2024)."""

from battgen._version import __version__

__all__ = ["BATTERIES", "FEATURES", "SOHEstimator", "load_pulsebat", "__version__"]

_LAZY = {"BATTERIES": "battgen.data", "FEATURES": "battgen.data", "load_pulsebat": "battgen.data",
         "SOHEstimator": "battgen.estimator"}


def __getattr__(name: str):
    # `import battgen` (and so every `battgen.x` module and the command line) imports nothing heavy:
    # the data registry needs pandas and the estimator scikit-learn, on first use only
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'battgen' has no attribute {name!r}")
