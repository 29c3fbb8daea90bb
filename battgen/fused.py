"""Many CVAEs of one configuration trained as one stack, the network's gradients written out by hand.

The paper's model has 4,315 parameters and a fit takes about 900 optimiser steps on batches of
32 rows: the arithmetic of a step is a few hundred microseconds, and autograd (plus ``vmap`` to
stack fits) costs many times that in bookkeeping. :class:`Stack` holds ``M`` fits' parameters in
one flat ``(M, P)`` buffer and runs a training step as a fixed list of batched array operations
on preallocated buffers:

- the forward pass of :class:`battgen.model.CVAE` (condition embedding, encoder, the
  factorised unit cross-attention of :class:`battgen.model.UnitCrossAttention`, the
  reparameterisation, decoder): the same function, in the same precision;
- the loss: :func:`battgen.model.loss_terms` gives the values recorded in the history and
  :func:`battgen.model.loss_grads` its gradient (checked against autograd on ``loss_terms`` at
  the first step of every stack);
- the backward pass through the network in closed form (the softmax read's gradients are those
  of :class:`battgen.model._SoftmaxRead`), checked against autograd on :class:`CVAE` in the tests;
- Adam (Keras' bias correction) on the flat buffers, seven operations for every parameter of every fit.

Each linear layer is stored as one ``(out, in + 1)`` block, its bias the last column, and its
input carries a column of ones: one batched product gives the layer's output, and one its weight
and bias gradients. The buffers are NumPy arrays shared with torch tensors: small operations and
batched matrix products run in NumPy (OpenBLAS), which costs a fraction of torch's per-call
overhead here, broadcasting products in torch. A fit's rows of every array go through the same
kernels whatever else the stack holds, so a fit trained alone equals the same fit trained beside
others (tested).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from battgen.config import CVAEConfig
from battgen.model import CVAE, loss_grads, loss_terms

__all__ = ["Stack", "check_loss_grads"]

_ATTN_ROWS = ("query.weight", "query.bias", "value.weight", "value.bias", "key.weight", "key.bias", "out.weight")
"""The seven (H*D,) rows of an attention layer in the flat buffer; rows 0-3 pair with rows 4 and 6 in its scalars."""
LOG2E, LN2 = 1.0 / math.log(2.0), math.log(2.0)


def _linears(cfg: CVAEConfig) -> list[tuple[str, tuple[str, ...], int, int]]:
    """``(block, layers, out, in)`` of the linear blocks; ``z`` stacks ``z_mean`` over ``z_logvar``."""
    E, I, F, L = cfg.embedding_dim, cfg.intermediate_dim, cfg.feature_dim, cfg.latent_dim
    A = I if cfg.conditioning == "attention" else I + E
    return [("cond_embed", ("cond_embed",), E, cfg.condition_dim), ("enc_hidden", ("enc_hidden",), I, F),
            ("z", ("z_mean", "z_logvar"), 2 * L, A), ("dec_hidden", ("dec_hidden",), I, L), ("dec_out", ("dec_out",), F, A)]


def check_loss_grads(cfg: CVAEConfig, x, x_hat, mu, logvar, w, free_bits: float = 0.0, beta=None) -> None:
    """Raise ``RuntimeError`` unless :func:`battgen.model.loss_grads` is autograd's gradient of :func:`loss_terms` here."""
    x, w, beta = x.double(), w.double(), None if beta is None else beta.double()
    leaves = [t.detach().double().requires_grad_() for t in (x_hat, mu, logvar)]
    with torch.enable_grad():
        auto = torch.autograd.grad(loss_terms(cfg, x, *leaves, w, free_bits, beta)[0].sum(), leaves, allow_unused=True,
                                   materialize_grads=True)
    with torch.no_grad():
        mine = loss_grads(cfg, x, *(t.detach() for t in leaves), w, free_bits, beta)
    for name, a, b in zip(("x_hat", "mu", "logvar"), auto, mine):
        if not torch.allclose(a, b, rtol=1e-6, atol=1e-9):
            raise RuntimeError(f"battgen.model.loss_grads is not the gradient of battgen.model.loss_terms (d/d {name} "
                               f"differs by {float((a - b).abs().max()):.3g}): change them together")


class _Work:
    """The buffers of one step for the first ``k`` fits of a stack, and the views the step uses."""

    def __init__(self, st: "Stack", k: int):
        cfg, B, dt = st.cfg, st.batch_size, st.dtype
        E, I, F, L, Cd = cfg.embedding_dim, cfg.intermediate_dim, cfg.feature_dim, cfg.latent_dim, cfg.condition_dim
        A = I if st.attention else I + E
        self.k = k

        def new(*shape: int) -> np.ndarray:
            return np.empty(shape, dtype=dt)

        def with_ones(*shape: int) -> np.ndarray:
            t = new(*shape)
            t[..., -1] = 1.0
            return t

        self.W, self.WT, self.Win, self.G = {}, {}, {}, {}
        for block, _, n_out, n_in in _linears(cfg):  # (k, out, in + 1) weights | bias, and their gradients
            self.W[block] = W = st.view(st.params, k, block, n_out, n_in + 1)
            self.WT[block] = W.transpose(0, 2, 1)  # (k, in + 1, out): inputs @ WT
            self.Win[block] = W[..., :-1]  # (k, out, in): d outputs @ Win = d inputs
            self.G[block] = st.view(st.grads, k, block, n_out, n_in + 1)
        self.xa, self.ca = new(k * B, F + 1), new(k * B, Cd + 1)  # gathered rows with their column of ones
        self.xa3, self.ca3 = self.xa.reshape(k, B, F + 1), self.ca.reshape(k, B, Cd + 1)
        self.xaT, self.caT = self.xa3.transpose(0, 2, 1), self.ca3.transpose(0, 2, 1)
        self.x = self.xa3[..., :F]  # (k, B, F)
        self.Pc, self.Pe, self.Pd = new(k, B, E), new(k, B, I), new(k, B, I)  # pre-activations
        self.za = with_ones(k, B, L + 1)  # (k, B, L+1) z | 1
        self.zs, self.se, self.tmpL = new(k, B, 2 * L), new(k, B, L), new(k, B, L)  # z_mean | z_logvar, exp(z_logvar/2) eps
        self.mu, self.logvar = self.zs[..., :L], self.zs[..., L:]
        self.xh, self.dsig = new(k, B, F), new(k, B, F)
        self.dAe, self.dAd, self.dz, self.dZ = new(k, B, A), new(k, B, A), new(k, B, L), new(k, B, 2 * L)
        self.dZT = self.dZ.transpose(0, 2, 1)
        self.Ae, self.Ad = with_ones(k, B, A + 1), with_ones(k, B, A + 1)  # (k, B, A+1) encoder / decoder read-out | 1
        self.dPc, self.dPe, self.dPd = new(k, B, E), new(k, B, I), new(k, B, I)
        self.dPcT, self.dPeT, self.dPdT = (t.transpose(0, 2, 1) for t in (self.dPc, self.dPe, self.dPd))
        self.mask_E, self.mask_I = np.empty((k, B, E), bool), np.empty((k, B, I), bool)
        self.torch = {name: torch.from_numpy(getattr(self, name)) for name in ("x", "xh", "mu", "logvar")}
        self.adam = [t[:k] for t in st._adam]  # params, grads, first and second moments
        if st.attention:
            H, D = cfg.num_heads, cfg.embedding_dim
            self.He, self.Hd = new(k, B, I), new(k, B, I)
            self.Pw = new(k, B, H, 3, E)  # rows [1, C, C^2] of every condition embedding, per head
            self.Pw[..., 0, :] = 1.0
            self.C, self.C2 = self.Pw[:, :, 0, 1], self.Pw[:, :, 0, 2]  # (k, B, E)
            self.Cb = self.C[:, :, None, :]  # (k, B, 1, E)
            self.PwH = self.Pw.reshape(k * B * H, 3, E)
            self.ones_C = self.PwH[:, 0:2].transpose(0, 2, 1)  # (kBH, E, 2): columns 1, C_j
            self.nlim = new(k, B, 2)  # -max C, -min C
            self.nmax, self.nmin = self.nlim[..., 0, None, None], self.nlim[..., 1, None, None]  # (k, B, 1, 1)
            self.pairs_full = new(k, 2, 2, 2, H, D)
            self.pairs = new(k, 2, 2, 2, H)  # per layer [[wq.wk, bq.wk], [wv.wo, bv.wo]]
            self.blk = st.view(st.params, k, "attn", 2, 7, H, D)
            self.blk03 = self.blk[:, :, 0:4].reshape(k, 2, 2, 2, H, D)  # a view: rows 0-3 as [[wq, bq], [wv, bv]]
            self.blk46 = self.blk[:, :, 4:7:2][:, :, :, None]  # (k, 2, 2, 1, H, D) [wk, wo]
            gblk = st.view(st.grads, k, "attn", 2, 7, H, D)
            self.gblk03, self.gblk46 = gblk[:, :, 0:4].reshape(k, 2, 2, 2, H, D), gblk[:, :, 4:7:2]
            self.bo, self.gbo = st.view(st.params, k, "attn_bo", 2), st.view(st.grads, k, "attn_bo", 2)
            self.ac = new(k, 2, 2, H)  # per layer: logit slope a and offset c
            self.beta = new(k, 2)
            self.dscal = new(k, 2, 2, 2, H)  # per layer [[da, dc], [dalpha, dbeta]]
            self.layers = [_AttnWork(self, st, layer) for layer in (0, 1)]
            self.dC = new(k, B, E)


class _AttnWork:
    """Buffers of one attention layer's forward and backward (see :meth:`Stack._attend`)."""

    def __init__(self, w: _Work, st: "Stack", layer: int):
        cfg, B, k, dt = st.cfg, st.batch_size, w.k, st.dtype
        H, E, I = cfg.num_heads, cfg.embedding_dim, cfg.intermediate_dim

        def new(*shape: int) -> np.ndarray:
            return np.empty(shape, dtype=dt)

        self.h = (w.He if layer == 0 else w.Hd)[:, :, None, :]  # (k, B, 1, I)
        self.out = (w.Ae if layer == 0 else w.Ad)[..., :I]  # (k, B, I) where the read-out goes
        self.a, self.c = w.ac[:, layer, 0, None, :, None], w.ac[:, layer, 1, None, :, None]  # (k, 1, H, 1)
        self.alpha = w.pairs[:, layer, 1, 0, None, :, None]  # (k, 1, H, 1)
        self.beta = w.beta[:, layer, None, None]  # (k, 1, 1)
        self.s, self.tmp = new(k, B, H, I), new(k, B, H, I)
        self.S = new(k * B * H, 2, I)  # rows: minus the row maximum, and the slopes, in powers of 2
        S5 = self.S.reshape(k, B, H, 2, I)
        self.shift, self.s2 = S5[..., 0, :], S5[..., 1, :]
        self.Et = new(k * B * H, E, I)  # 2^(s2_i C_j - max_j s2_i C_j), keys first
        self.EtT = self.Et.transpose(0, 2, 1)
        self.moments = new(k * B * H, 3, I)
        m5 = self.moments.reshape(k, B, H, 3, I)
        self.Z, self.m12 = m5[..., 0:1, :], m5[..., 1:, :]
        self.read = new(k, B, H, 2, I)  # g = sum_j att_ij C_j, and sum_j att_ij C_j^2
        self.g, self.second = self.read[..., 0, :], self.read[..., 1, :]
        self.W = new(k * B * H, 3, I)
        W5 = self.W.reshape(k, B, H, 3, I)
        self.W0, self.W1, self.W2 = W5[..., 0, :], W5[..., 1, :], W5[..., 2, :]
        self.R = new(k * B * H, 3, E)
        R5 = self.R.reshape(k, B, H, 3, E)
        self.R0, self.R1, self.R2 = R5[..., 0, :], R5[..., 1, :], R5[..., 2, :]
        self.dg, self.ds = new(k, B, H, I), new(k, B, H, I)
        self.dCh = new(k, B, H, E)
        self.dscal = w.dscal[:, layer]  # (k, 2, 2, H)
        self.dalpha, self.dbeta = self.dscal[:, 1, 0], self.dscal[:, 1, 1, :1]  # (k, H), (k, 1)
        self.da, self.dc = self.dscal[:, 0, 0], self.dscal[:, 0, 1]  # (k, H)
        self.dh = new(k, B, I)


class Stack:
    """``M`` CVAEs of one configuration: flat parameters, Adam state, and the training step.

    ``models`` give the initial weights (built with each fit's seed); :meth:`step` takes one
    mini-batch per fit for the first ``k`` fits (the active prefix), writes their gradients and
    returns their loss terms; :meth:`adam` applies the update; :meth:`state_dict` gives a fit's
    weights back in :class:`battgen.model.CVAE`'s names.
    """

    def __init__(self, cfg: CVAEConfig, models: Sequence[CVAE], batch_size: int, free_bits: float = 0.0):
        self.cfg, self.batch_size, self.free_bits = cfg, int(batch_size), float(free_bits)
        self.attention = cfg.conditioning == "attention"
        self.sigmoid = cfg.output == "sigmoid"
        H, D = cfg.num_heads, cfg.embedding_dim
        blocks = ([("attn", 2 * 7 * H * D), ("attn_bo", 2)] if self.attention else []) + \
            [(block, n_out * (n_in + 1)) for block, _, n_out, n_in in _linears(cfg)]
        self.offsets, start = {}, 0
        for block, size in blocks:
            self.offsets[block] = start
            start += size
        self.size = -(-start // 16) * 16  # padded: every fit's row starts on a 64-byte boundary
        self.dtype = dt = np.float64 if next(models[0].parameters()).dtype == torch.float64 else np.float32
        M = len(models)
        self.params = np.zeros((M, self.size), dtype=dt)  # (M, P)
        for m, model in enumerate(models):
            self.params[m, :start] = torch.cat([t.reshape(-1) for t in self._blocks(model.state_dict())]).numpy()
        self.grads = np.zeros((M, self.size), dtype=dt)  # (M, P)
        self._adam = [torch.from_numpy(t) for t in (self.params, self.grads, np.zeros_like(self.params), np.zeros_like(self.params))]
        self._work: _Work | None = None
        self.keep(1)
        self.checked = False

    def view(self, flat: np.ndarray, k: int, block: str, *shape: int) -> np.ndarray:
        """Block ``block`` of the first ``k`` rows of a flat ``(M, P)`` buffer, as a ``(k, *shape)`` view."""
        start = self.offsets[block]
        out = flat[:k, start:start + math.prod(shape)].reshape(k, *shape)
        assert np.shares_memory(out, flat)  # a view, never a copy: the step writes through it
        return out

    def _blocks(self, state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        out = []
        if self.attention:
            out.append(torch.stack([state[f"{layer}.{row}"].reshape(-1) for layer in ("enc_attn", "dec_attn")
                                    for row in _ATTN_ROWS]))
            out.append(torch.cat([state["enc_attn.out.bias"], state["dec_attn.out.bias"]]))
        for _, layers, _, _ in _linears(self.cfg):
            out.append(torch.cat([torch.cat([state[f"{n}.weight"], state[f"{n}.bias"][:, None]], dim=1) for n in layers]))
        return out

    def state_dict(self, slot: int) -> dict[str, torch.Tensor]:
        """Fit ``slot``'s weights under :class:`battgen.model.CVAE`'s parameter names."""
        cfg, out = self.cfg, {}
        if self.attention:
            H, D = cfg.num_heads, cfg.embedding_dim
            blk = self.view(self.params, slot + 1, "attn", 2, 7, H * D)[slot]
            bo = self.view(self.params, slot + 1, "attn_bo", 2)[slot]
            for i, layer in enumerate(("enc_attn", "dec_attn")):
                for r, row in enumerate(_ATTN_ROWS):
                    shape = (1, H * D) if row == "out.weight" else (H * D, 1) if row.endswith("weight") else (H * D,)
                    out[f"{layer}.{row}"] = torch.tensor(blk[i, r].reshape(shape))
                out[f"{layer}.out.bias"] = torch.tensor(bo[i:i + 1])
        for block, layers, n_out, n_in in _linears(cfg):
            W = self.view(self.params, slot + 1, block, n_out, n_in + 1)[slot]
            rows = n_out // len(layers)
            for j, name in enumerate(layers):
                out[f"{name}.weight"] = torch.tensor(W[j * rows:(j + 1) * rows, :n_in])
                out[f"{name}.bias"] = torch.tensor(W[j * rows:(j + 1) * rows, n_in])
        return out

    # ------------------------------------------------------------------ the attention layer
    @staticmethod
    def _attend(a: _AttnWork, w: _Work) -> None:
        """:meth:`battgen.model.UnitCrossAttention.forward` of one layer: ``a.out = alpha * g + beta``."""
        np.multiply(a.a, a.h, out=a.s)
        np.add(a.s, a.c, out=a.s)  # (k, B, H, I) logit slopes s_i = a h_i + c
        np.multiply(a.s, LOG2E, out=a.s2)  # the same in powers of 2
        np.multiply(a.s2, w.nmax, out=a.shift)
        np.multiply(a.s2, w.nmin, out=a.tmp)
        np.minimum(a.shift, a.tmp, out=a.shift)  # -max_j s2_i C_j (C_j >= 0 lies in [min C, max C])
        np.matmul(w.ones_C, a.S, out=a.Et)  # (kBH, E, I) shift_i + C_j s2_i, as one product per row
        np.exp2(a.Et, out=a.Et)
        np.matmul(w.PwH, a.Et, out=a.moments)  # (kBH, 3, I): normaliser, sum E C, sum E C^2
        np.divide(a.m12, a.Z, out=a.read)
        if a.g.shape[2] == 1:
            np.multiply(a.g[:, :, 0], a.alpha[:, :, 0], out=a.out)
        else:
            np.multiply(a.g, a.alpha, out=a.tmp)
            np.add.reduce(a.tmp, axis=2, out=a.out)
        np.add(a.out, a.beta, out=a.out)  # (k, B, I)

    @staticmethod
    def _attend_back(a: _AttnWork, w: _Work, dy: np.ndarray) -> None:
        """Gradients of :meth:`_attend` for ``dy`` = d loss / d out: ``a.dh``, ``a.dCh`` and ``a.dscal``."""
        dyh = dy[:, :, None, :]  # (k, B, 1, I)
        np.multiply(dyh, a.g, out=a.tmp)
        np.add.reduce(a.tmp, axis=(1, 3), out=a.dalpha)  # (k, H)
        np.add.reduce(dy, axis=(1, 2), out=a.dbeta[:, 0])  # (k,)
        np.multiply(dyh, a.alpha, out=a.dg)  # (k, B, H, I) d loss / d g
        np.multiply(a.g, a.g, out=a.ds)
        np.subtract(a.second, a.ds, out=a.ds)
        np.multiply(a.ds, a.dg, out=a.ds)  # d loss / d s = dg (E[C^2] - g^2)
        np.divide(a.dg, a.Z[..., 0, :], out=a.W0)
        np.multiply(a.W0, a.s, out=a.W1)
        np.multiply(a.W1, a.g, out=a.W2)
        np.matmul(a.W, a.EtT, out=a.R)  # (kBH, 3, E)
        np.multiply(w.Cb, a.R1, out=a.dCh)
        np.add(a.dCh, a.R0, out=a.dCh)
        np.subtract(a.dCh, a.R2, out=a.dCh)  # d loss / d C_j, per head
        np.multiply(a.ds, a.h, out=a.tmp)
        np.add.reduce(a.tmp, axis=(1, 3), out=a.da)  # (k, H)
        np.add.reduce(a.ds, axis=(1, 3), out=a.dc)  # (k, H)
        if a.ds.shape[2] == 1:
            np.multiply(a.ds[:, :, 0], a.a[:, :, 0], out=a.dh)
        else:
            np.multiply(a.ds, a.a, out=a.tmp)
            np.add.reduce(a.tmp, axis=2, out=a.dh)  # (k, B, I)

    # ------------------------------------------------------------------ one step
    def _work_for(self, k: int) -> _Work:
        if self._work is None or self._work.k != k:
            self._work = _Work(self, k)
        return self._work

    def keep(self, steps: int) -> None:
        """Keep the network's outputs of the next ``steps`` steps for :meth:`kept_terms`."""
        cfg, M, B = self.cfg, len(self.params), self.batch_size
        self.kept_xh = np.zeros((steps, M, B, cfg.feature_dim), dtype=self.dtype)
        self.kept_zs = np.zeros((steps, M, B, 2 * cfg.latent_dim), dtype=self.dtype)

    def kept_terms(self, n: int, rows: np.ndarray, X: np.ndarray, w: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
        """:func:`battgen.model.loss_terms` of the batches of the last ``n`` steps (kept in slots
        ``[0, n)``), (3, n, M); ``rows`` (n, M * B), ``w`` (n, M, B) and ``beta`` are those steps'.
        Entries of fits that were not training are meaningless."""
        cfg, M, B, L = self.cfg, len(self.params), self.batch_size, self.cfg.latent_dim
        x = torch.from_numpy(np.take(X, rows, axis=0)).view(n, M, B, -1)[..., : cfg.feature_dim]  # (n, M, B, F)
        xh, zs = torch.from_numpy(self.kept_xh[:n]), torch.from_numpy(self.kept_zs[:n])
        with torch.no_grad():
            return loss_terms(cfg, x, xh, zs[..., :L], zs[..., L:], w, self.free_bits, beta)

    def step(self, k: int, rows: np.ndarray, X: np.ndarray, C: np.ndarray, eps: np.ndarray, w: torch.Tensor,
             beta: torch.Tensor | None = None, slot: int = 0) -> None:
        """Forward and backward of fits ``[0, k)``; gradients go to ``self.grads[:k]``.

        ``rows`` (k * B,) index the batch's rows in ``X`` (n, F + 1) scaled features and ``C``
        (n, 2 + 1) scaled conditions, both with a last column of ones; ``eps`` (k, B, L) is the
        reparameterisation noise, ``w`` (k, B) the row weights, ``beta`` (k,) the KL weights if
        annealing. The reconstruction and the posterior go to slot ``slot`` of the kept outputs
        (:meth:`keep`), whose loss :meth:`kept_terms` computes for many steps at once.
        """
        cfg, wk = self.cfg, self._work_for(k)
        I, L = cfg.intermediate_dim, cfg.latent_dim
        W, WT, Win, G = wk.W, wk.WT, wk.Win, wk.G
        np.take(X, rows, axis=0, out=wk.xa)
        np.take(C, rows, axis=0, out=wk.ca)
        # forward: condition embedding, encoder, posterior, decoder
        np.matmul(wk.ca3, WT["cond_embed"], out=wk.Pc)  # (k, B, E)
        np.matmul(wk.xa3, WT["enc_hidden"], out=wk.Pe)  # (k, B, I)
        if self.attention:
            self._attention_scalars(wk)
            np.maximum(wk.Pe, 0.0, out=wk.He)
            self._attend(wk.layers[0], wk)  # writes wk.Ae[..., :I]
        else:
            np.maximum(wk.Pe, 0.0, out=wk.Ae[..., :I])
            np.maximum(wk.Pc, 0.0, out=wk.Ae[..., I:-1])
            wk.Ad[..., I:-1] = wk.Ae[..., I:-1]  # the decoder reads the same condition embedding
        np.matmul(wk.Ae, WT["z"], out=wk.zs)  # (k, B, 2L): z_mean | z_logvar
        np.multiply(wk.logvar, 0.5, out=wk.se)
        np.exp(wk.se, out=wk.se)
        np.multiply(wk.se, eps, out=wk.se)  # exp(logvar / 2) * eps
        np.add(wk.mu, wk.se, out=wk.za[..., :L])
        np.matmul(wk.za, WT["dec_hidden"], out=wk.Pd)  # (k, B, I)
        if self.attention:
            np.maximum(wk.Pd, 0.0, out=wk.Hd)
            self._attend(wk.layers[1], wk)  # writes wk.Ad[..., :I]
        else:
            np.maximum(wk.Pd, 0.0, out=wk.Ad[..., :I])
        np.matmul(wk.Ad, WT["dec_out"], out=wk.xh)  # (k, B, F)
        if self.sigmoid:  # 1 / (1 + exp(-out)), element by element whatever the stack (no vector/scalar split)
            np.negative(wk.xh, out=wk.xh)
            np.exp(wk.xh, out=wk.xh)
            np.add(wk.xh, 1.0, out=wk.xh)
            np.reciprocal(wk.xh, out=wk.xh)
        t = wk.torch

        # the loss: loss_grads' gradient now, loss_terms' values later (kept_terms)
        self.kept_xh[slot, :k] = wk.xh
        self.kept_zs[slot, :k] = wk.zs
        with torch.no_grad():
            if not self.checked:
                check_loss_grads(cfg, t["x"], t["xh"], t["mu"], t["logvar"], w, self.free_bits, beta)
                self.checked = True
            d_out, d_mu, d_logvar = loss_grads(cfg, t["x"], t["xh"], t["mu"], t["logvar"], w, self.free_bits, beta)
        d_out = d_out.numpy()  # (k, B, F)
        if self.sigmoid:
            np.subtract(1.0, wk.xh, out=wk.dsig)
            np.multiply(wk.dsig, wk.xh, out=wk.dsig)
            np.multiply(d_out, wk.dsig, out=d_out)  # d out = d x_hat * x_hat (1 - x_hat)

        # backward: decoder
        np.matmul(d_out.transpose(0, 2, 1), wk.Ad, out=G["dec_out"])
        np.matmul(d_out, Win["dec_out"], out=wk.dAd)  # (k, B, A)
        if self.attention:
            dec = wk.layers[1]
            self._attend_back(dec, wk, wk.dAd)
            dHd = dec.dh
        else:
            dHd = wk.dAd[..., :I]
        np.greater(wk.Pd, 0.0, out=wk.mask_I)
        np.multiply(dHd, wk.mask_I, out=wk.dPd)  # (k, B, I)
        np.matmul(wk.dPdT, wk.za, out=G["dec_hidden"])
        np.matmul(wk.dPd, Win["dec_hidden"], out=wk.dz)  # (k, B, L)
        # posterior: z = mu + exp(logvar / 2) eps
        np.add(d_mu.numpy(), wk.dz, out=wk.dZ[..., :L])
        np.multiply(wk.dz, wk.se, out=wk.tmpL)
        np.multiply(wk.tmpL, 0.5, out=wk.tmpL)
        np.add(d_logvar.numpy(), wk.tmpL, out=wk.dZ[..., L:])
        np.matmul(wk.dZT, wk.Ae, out=G["z"])
        np.matmul(wk.dZ, Win["z"], out=wk.dAe)  # (k, B, A)
        # encoder and condition embedding
        if self.attention:
            enc = wk.layers[0]
            self._attend_back(enc, wk, wk.dAe)
            dHe = enc.dh
            if cfg.num_heads == 1:
                np.add(enc.dCh[:, :, 0], dec.dCh[:, :, 0], out=wk.dC)
            else:
                np.add.reduce(enc.dCh, axis=2, out=wk.dC)
                wk.dC += dec.dCh.sum(axis=2)
            dC = wk.dC  # (k, B, E)
            self._attention_grads(wk)
        else:
            dHe = wk.dAe[..., :I]
            dC = wk.dC = wk.dAe[..., I:] + wk.dAd[..., I:]  # (k, B, E)
        np.greater(wk.Pe, 0.0, out=wk.mask_I)
        np.multiply(dHe, wk.mask_I, out=wk.dPe)  # (k, B, I)
        np.matmul(wk.dPeT, wk.xa3, out=G["enc_hidden"])
        np.greater(wk.Pc, 0.0, out=wk.mask_E)
        np.multiply(dC, wk.mask_E, out=wk.dPc)  # (k, B, E)
        np.matmul(wk.dPcT, wk.ca3, out=G["cond_embed"])

    def _attention_scalars(self, wk: _Work) -> None:
        """Both attention layers' ``(a, c, alpha, beta)`` (see :meth:`UnitCrossAttention.scalars`), and ``C``."""
        np.maximum(wk.Pc, 0.0, out=wk.C)
        np.multiply(wk.C, wk.C, out=wk.C2)
        if self.cfg.num_heads > 1:
            wk.Pw[:, :, 1:] = wk.Pw[:, :, :1]
        np.maximum.reduce(wk.C, axis=-1, out=wk.nlim[..., 0])
        np.minimum.reduce(wk.C, axis=-1, out=wk.nlim[..., 1])
        np.negative(wk.nlim, out=wk.nlim)
        np.multiply(wk.blk03, wk.blk46, out=wk.pairs_full)
        np.add.reduce(wk.pairs_full, axis=-1, out=wk.pairs)  # (k, 2, 2, 2, H)
        np.multiply(wk.pairs[:, :, 0], 1.0 / math.sqrt(self.cfg.embedding_dim), out=wk.ac)  # a, c = (wq, bq).wk / sqrt(D)
        np.add.reduce(wk.pairs[:, :, 1, 1], axis=-1, out=wk.beta)
        np.add(wk.beta, wk.bo, out=wk.beta)  # beta = sum_h bv.wo + bo

    def _attention_grads(self, wk: _Work) -> None:
        """Both attention layers' parameter gradients from d loss / d (a, c, alpha, beta) of each."""
        ds = wk.dscal  # (k, 2, 2, 2, H) per layer [[da, dc], [dalpha, dbeta]]
        if self.cfg.num_heads > 1:
            ds[:, :, 1, 1] = ds[:, :, 1, 1, :1]  # every head's bv.wo enters beta alike
        np.multiply(ds[:, :, 0], 1.0 / math.sqrt(self.cfg.embedding_dim), out=ds[:, :, 0])  # d/d (wq.wk), d/d (bq.wk)
        dsx = ds[..., None]
        np.multiply(dsx, wk.blk46, out=wk.gblk03)  # wq bq wv bv
        np.multiply(dsx, wk.blk03, out=wk.pairs_full)
        np.add.reduce(wk.pairs_full, axis=3, out=wk.gblk46)  # wk, wo (the key bias cancels in the softmax: row 5 stays 0)
        wk.gbo[...] = ds[:, :, 1, 1, 0]

    def adam(self, k: int, lr_t: float, beta1: float, beta2: float, eps: float) -> None:
        """One Adam update of fits ``[0, k)`` with the step size ``lr_t`` (bias correction included)."""
        p, g, m1, m2 = self._work_for(k).adam
        m1.mul_(beta1).add_(g, alpha=1 - beta1)
        m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.addcdiv_(m1, m2.sqrt().add_(eps), value=-lr_t)
