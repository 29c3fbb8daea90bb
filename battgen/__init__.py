"""battgen: generative learning assisted SOH estimation for retired batteries (Tao et al., 2024)."""

from battgen.data import BATTERIES, FEATURES, load_pulsebat

__version__ = "0.1.0"
__all__ = ["BATTERIES", "FEATURES", "load_pulsebat", "__version__"]
