"""One evaluation core: splits, a registry of generators, and the protocols that use them."""
