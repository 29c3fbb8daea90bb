"""The CVAE's training loss and its gradient, for torch tensors and NumPy arrays alike.

One function, :func:`loss_terms`, is the loss: the trainer (:mod:`battgen.fused`, NumPy) records
it on every mini-batch, :meth:`battgen.model.CVAE.loss` returns it, and chapter 02 shows it.
:func:`loss_grads` is its gradient in closed form, which the trainer steps along; it is checked
against autograd on :func:`loss_terms` in the tests (``tests/test_model.py``) and against finite
differences of :func:`loss_terms` at the first step of every training run
(:func:`check_loss_grads`). Importing this module does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from battgen.config import CVAEConfig

if TYPE_CHECKING:
    import torch

__all__ = ["loss_terms", "loss_grads", "check_loss_grads"]

Array = TypeVar("Array", "torch.Tensor", np.ndarray)


def _namespace(a: Any) -> Any:
    """``numpy`` for NumPy arrays, ``torch`` for tensors (imported only when a tensor is given)."""
    if isinstance(a, np.ndarray):
        return np
    import torch

    return torch


def loss_terms(cfg: CVAEConfig, x: Array, x_hat: Array, mu: Array, logvar: Array, w: Array, free_bits: float = 0.0,
               beta: Array | None = None) -> Array:
    """The training loss: ``(loss, recon, kl)`` as one (3,) array, the batch mean over rows weighted by ``w``.

    The paper's loss is ``w_recon * F * MSE + w_kl * KL`` per row (``F`` = 21 features, the MSE
    over them, the KL of the diagonal Gaussian posterior from ``N(0, I)``), averaged over the
    rows of the batch; ``w`` is 1 for a real row and 0 for padding (the stacked trainer pads
    short fits). The improved generators add a KL weight ``beta`` (annealing) and a floor of
    ``free_bits`` nats on the batch-mean KL of each latent dimension. :func:`battgen.train.fit_generators`
    records exactly this function on every mini-batch of every fit and steps along its gradient
    (:func:`loss_grads`). Leading dimensions of the inputs (``x`` (..., B, F), ``w`` (..., B),
    ``beta`` (...)) are independent batches, and the result is then (3, ...). Torch tensors in,
    a tensor out; NumPy arrays in, an array out.
    """
    xp = _namespace(logvar)
    recon = cfg.feature_dim * ((x - x_hat) ** 2).mean(-1)  # (..., B)
    kl_dims = -0.5 * (1 + logvar - mu * mu - xp.exp(logvar))  # (..., B, L)
    kl = kl_dims.sum(-1)  # (..., B)
    n = w.sum(-1)  # (...)
    if free_bits <= 0 and beta is None:  # the paper's loss
        terms = xp.stack([cfg.w_recon * recon + cfg.w_kl * kl, recon, kl])  # (3, ..., B)
        return (terms * w).sum(-1) / n  # (3, ...): loss, recon, kl
    w_kl = cfg.w_kl if beta is None else cfg.w_kl * beta
    mean_recon = (recon * w).sum(-1) / n  # (...)
    kl_per_dim = (kl_dims * w[..., None]).sum(-2) / n[..., None]  # (..., L) batch-mean KL of each latent dimension
    kl_term = kl_per_dim.clip(min=free_bits).sum(-1) if free_bits > 0 else kl_per_dim.sum(-1)
    loss = cfg.w_recon * mean_recon + w_kl * kl_term
    return xp.stack([loss, mean_recon, kl_per_dim.sum(-1)])  # (3, ...): loss, recon, kl


def loss_grads(cfg: CVAEConfig, x: Array, x_hat: Array, mu: Array, logvar: Array, w: Array, free_bits: float = 0.0,
               beta: Array | None = None) -> tuple[Array, Array, Array]:
    """The gradient of :func:`loss_terms`'s loss with respect to ``x_hat``, ``mu`` and ``logvar``, in closed form.

    Same arguments and shapes as :func:`loss_terms` (for leading batch dimensions, the gradient of
    the sum of their losses), as torch tensors or as NumPy arrays (the trainer's buffers). The
    trainer records :func:`loss_terms` and steps along this gradient, because autograd on the loss
    alone would cost more than the network's whole step. ``tests/test_model.py`` checks it against
    autograd on :func:`loss_terms` for every branch, and :func:`battgen.train.fit_generators`
    checks it against finite differences on the first batch of every run
    (:func:`check_loss_grads`): changing one without the other stops training with an error.
    """
    exp = _namespace(logvar).exp
    share = (w / w.sum(-1)[..., None])[..., None]  # (..., B, 1) each row's weight in the batch mean
    d_x_hat = (x_hat - x) * (share * (2 * cfg.w_recon))  # (..., B, F): w_recon * d(sum of squares)
    d_kl = share * (cfg.w_kl if beta is None else cfg.w_kl * beta[..., None, None])  # (..., B, 1)
    if free_bits > 0:  # a latent dimension whose batch-mean KL sits below the floor gets no gradient
        kl_dims = -0.5 * (1 + logvar - mu * mu - exp(logvar))  # (..., B, L)
        kl_per_dim = (kl_dims * w[..., None]).sum(-2) / w.sum(-1)[..., None]  # (..., L), as in loss_terms
        d_kl = d_kl * (kl_per_dim >= free_bits)[..., None, :]  # (..., B, L)
    return d_x_hat, mu * d_kl, (exp(logvar) - 1) * (0.5 * d_kl)  # (..., B, F), (..., B, L), (..., B, L)


def check_loss_grads(cfg: CVAEConfig, x: np.ndarray, x_hat: np.ndarray, mu: np.ndarray, logvar: np.ndarray,
                     w: np.ndarray, free_bits: float = 0.0, beta: np.ndarray | None = None, seed: int = 0) -> None:
    """Raise ``RuntimeError`` unless :func:`loss_grads` is the gradient of :func:`loss_terms` at this batch.

    In float64, along three random directions (one per argument: ``x_hat``, ``mu``, ``logvar``), the
    central difference of the summed loss over a step of 1e-6 must equal the gradient's directional
    derivative to 1e-6 relative (the difference's own error is of order 1e-10 here). NumPy only.
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    beta = None if beta is None else np.asarray(beta, np.float64)
    args = [np.asarray(a, np.float64) for a in (x_hat, mu, logvar)]
    grads = loss_grads(cfg, x, *args, w, free_bits, beta)
    rng, h = np.random.default_rng(seed), 1e-6
    for i, name in enumerate(("x_hat", "mu", "logvar")):
        v = rng.standard_normal(args[i].shape)
        if free_bits > 0 and name != "x_hat":  # a dimension's batch-mean KL within the step of the floor: no derivative
            kl_dims = -0.5 * (1 + args[2] - args[1] ** 2 - np.exp(args[2]))
            kl_per_dim = (kl_dims * w[..., None]).sum(-2) / w.sum(-1)[..., None]
            v = v * (np.abs(kl_per_dim - free_bits) > 1e-4)[..., None, :]
        moved = [[a + s * h * v if j == i else a for j, a in enumerate(args)] for s in (1, -1)]
        up, down = (float(loss_terms(cfg, x, *m, w, free_bits, beta)[0].sum()) for m in moved)
        numeric, analytic = (up - down) / (2 * h), float((grads[i] * v).sum())
        if abs(numeric - analytic) > 1e-6 * max(1.0, abs(analytic)):
            raise RuntimeError(f"battgen.loss.loss_grads is not the gradient of battgen.loss.loss_terms (d/d {name} along a "
                               f"random direction: {analytic:.9g}, finite differences {numeric:.9g}): change them together")
