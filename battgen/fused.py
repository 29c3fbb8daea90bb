"""Many CVAEs of one configuration trained as one stack, the network's gradients written out by hand.

The paper's model has 4,315 parameters and a fit takes about 900 optimiser steps on batches of
32 rows: the arithmetic of a step is a few hundred microseconds, and autograd (plus ``vmap`` to
stack fits) costs many times that in bookkeeping. :class:`Stack` holds ``M`` fits' parameters in
one flat ``(M, P)`` buffer and runs a training step as a fixed list of batched operations on
preallocated buffers:

- the forward pass of :class:`battgen.model.CVAE` (condition embedding, encoder, the
  factorised unit cross-attention of :class:`battgen.model.UnitCrossAttention`, the
  reparameterisation, decoder): the same function, in the same precision;
- the loss: :func:`battgen.loss.loss_terms` gives the values recorded in the history and
  :func:`battgen.loss.loss_grads` its gradient (checked against finite differences of
  ``loss_terms`` at the first step of every stack, against autograd in the tests);
- the backward pass through the network in closed form (the softmax read's gradients are those
  of :class:`battgen.model._SoftmaxRead`), checked against autograd on :class:`CVAE` in the tests;
- Adam (Keras' bias correction) on the flat buffers.

Each linear layer is stored as one ``(out, in + 1)`` block, its bias the last column, and its
input carries a column of ones: one batched product (NumPy's ``matmul``, OpenBLAS) gives the
layer's output, and one its weight and bias gradients. Everything else, the attention layers
above all, runs in the compiled kernels of :mod:`battgen.kernels`, a few calls per step. A fit's
rows of every array go through the same kernels whatever else the stack holds, so a fit trained
alone equals the same fit trained beside others (tested).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from battgen import kernels
from battgen.config import CVAEConfig
from battgen.loss import check_loss_grads, loss_grads, loss_terms

__all__ = ["Stack", "check_loss_grads"]

_ATTN_ROWS = ("query.weight", "query.bias", "value.weight", "value.bias", "key.weight", "key.bias", "out.weight")
"""The seven (H*D,) rows of an attention layer in the flat buffer; rows 0-3 pair with rows 4 and 6 in its scalars."""
LOG2E = 1.0 / math.log(2.0)

def _linears(cfg: CVAEConfig) -> list[tuple[str, tuple[str, ...], int, int]]:
    """``(block, layers, out, in)`` of the linear blocks; ``z`` stacks ``z_mean`` over ``z_logvar``."""
    E, I, F, L = cfg.embedding_dim, cfg.intermediate_dim, cfg.feature_dim, cfg.latent_dim
    A = I if cfg.conditioning == "attention" else I + E
    return [("cond_embed", ("cond_embed",), E, cfg.condition_dim), ("enc_hidden", ("enc_hidden",), I, F),
            ("z", ("z_mean", "z_logvar"), 2 * L, A), ("dec_hidden", ("dec_hidden",), I, L), ("dec_out", ("dec_out",), F, A)]


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

        self.WT, self.Win, self.G = {}, {}, {}
        for block, _, n_out, n_in in _linears(cfg):  # (k, out, in + 1) weights | bias, and their gradients
            W = st.view(st.params, k, block, n_out, n_in + 1)
            self.WT[block] = W.transpose(0, 2, 1)  # (k, in + 1, out): inputs @ WT
            self.Win[block] = W[..., :-1]  # (k, out, in): d outputs @ Win = d inputs
            self.G[block] = st.view(st.grads, k, block, n_out, n_in + 1)
        self.consts = np.array([LOG2E, 0.0, 1.0, 0.5, 1.0 / math.sqrt(cfg.embedding_dim), -126.0, 1e30], dtype=dt)  # see battgen.kernels
        self.xa3, self.ca3 = new(k, B, F + 1), new(k, B, Cd + 1)  # gathered rows with their column of ones
        self.x = self.xa3[..., :F]  # (k, B, F)
        self.Pc, self.Pe, self.Pd, self.Po = new(k, B, E), new(k, B, I), new(k, B, I), new(k, B, F)  # pre-activations
        self.za = with_ones(k, B, L + 1)  # (k, B, L+1) z | 1
        self.zs, self.se = new(k, B, 2 * L), new(k, B, L)  # z_mean | z_logvar, exp(z_logvar/2) eps
        self.mu, self.logvar = self.zs[..., :L], self.zs[..., L:]
        self.xh = new(k, B, F)
        self.dAe, self.dAd, self.dz, self.dZ = new(k, B, A), new(k, B, A), new(k, B, L), new(k, B, 2 * L)
        self.Ae, self.Ad = with_ones(k, B, A + 1), with_ones(k, B, A + 1)  # (k, B, A+1) encoder / decoder read-out | 1
        self.dPc, self.dPe, self.dPd = new(k, B, E), new(k, B, I), new(k, B, I)
        self.dC = new(k, B, E)  # d loss / d C
        if st.attention:  # ReLU outputs: attention's query units and context
            H, D = cfg.num_heads, cfg.embedding_dim
            self.He, self.Hd, self.C = new(k, B, I), new(k, B, I), new(k, B, E)
            self.Cc, self.Cc2 = new(k, B, E), new(k, B, E)  # C's non-zero units, compacted, and their squares
            self.Cidx, self.Cstat = np.empty((k, B, E), np.int64), new(k, B, 4)  # their positions; max, min, zeros, non-zeros
            self.blk, self.gblk = st.view(st.params, k, "attn", 2, 7, H, D), st.view(st.grads, k, "attn", 2, 7, H, D)
            self.bo, self.gbo = st.view(st.params, k, "attn_bo", 2), st.view(st.grads, k, "attn_bo", 2)
            self.pairs = new(k, 2, 2, 2, H)  # per layer [[wq.wk, bq.wk], [wv.wo, bv.wo]]
            self.ac, self.beta = new(k, 2, 2, H), new(k, 2)  # per layer: logit slope a and offset c; offset beta
            self.dscal = new(k, 2, 2, 2, H)  # per layer d loss / d [[a, c], [alpha, beta]]
            self.layers = [_AttnWork(self, st, layer) for layer in (0, 1)]
        else:  # straight into the read-outs (hidden units | condition embedding)
            self.He, self.Hd, self.C = self.Ae[..., :I], self.Ad[..., :I], self.Ae[..., I:-1]
            self.dHe, self.dHd = self.dAe[..., :I], self.dAd[..., :I]


class _AttnWork:
    """Buffers of one attention layer's forward and backward (see :mod:`battgen.kernels`)."""

    def __init__(self, w: _Work, st: "Stack", layer: int):
        cfg, B, k, dt = st.cfg, st.batch_size, w.k, st.dtype
        H, E, I = cfg.num_heads, cfg.embedding_dim, cfg.intermediate_dim

        def new(*shape: int) -> np.ndarray:
            return np.empty(shape, dtype=dt)

        self.h = w.He if layer == 0 else w.Hd  # (k, B, I) query units
        self.out = (w.Ae if layer == 0 else w.Ad)[..., :I]  # (k, B, I) where the read-out goes
        self.a, self.c = w.ac[:, layer, 0], w.ac[:, layer, 1]  # (k, H) logit slope and offset
        self.alpha, self.beta = w.pairs[:, layer, 1, 0], w.beta[:, layer]  # (k, H) read-out gain, (k,) offset
        self.s, self.g, self.sec, self.Z = new(k, B, H, I), new(k, B, H, I), new(k, B, H, I), new(k, B, H, I)
        self.shared = new(k, B, H, 2)  # (g, Z) of the row shared by the zero query units
        self.hidx, self.hn = np.empty((k, B, I), np.int64), np.empty((k, B), np.int64)
        self.start = np.empty((k, B, H), np.int64)
        self.buf = new(k * B * H * (I + 4) * (E + 8))  # the blocks' exponents, then weights, row by row
        self.dscal = w.dscal[:, layer]  # (k, 2, 2, H)
        self.dh = new(k, B, I)
        # the kernels' arguments, looked up once
        self.args = (self.h, w.Cc, w.Cstat, self.a, self.c, w.consts, self.s, self.hidx, self.hn, self.start, self.buf)
        self.read = (self.buf, self.start, w.Cc, w.Cc2, w.Cstat, self.hidx, self.hn, self.alpha, self.beta, w.consts, self.g,
                     self.sec, self.Z, self.shared, self.out)
        self.back = (self.h, self.buf, self.start, w.Cc, w.Cidx, w.Cstat, self.hidx, self.hn, self.a, self.c, self.alpha,
                     self.s, self.g, self.sec, self.Z, self.shared, w.consts, self.dh)


class Stack:
    """``M`` CVAEs of one configuration: flat parameters, Adam state, and the training step.

    ``initial`` give each fit's initial weights (arrays under :class:`battgen.model.CVAE`'s names;
    float64 ones make a float64 stack); :meth:`step` takes one
    mini-batch per fit for the first ``k`` fits (the active prefix), writes their gradients and
    returns their loss terms; :meth:`adam` applies the update; :meth:`state_dict` gives a fit's
    weights back in :class:`battgen.model.CVAE`'s names.
    """

    def __init__(self, cfg: CVAEConfig, initial: Sequence[Mapping[str, np.ndarray]], batch_size: int, free_bits: float = 0.0):
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
        states = [{k: np.asarray(v) for k, v in state.items()} for state in initial]
        self.dtype = dt = np.float64 if next(iter(states[0].values())).dtype == np.float64 else np.float32
        M = len(states)
        self.params = np.zeros((M, self.size), dtype=dt)  # (M, P)
        for m, state in enumerate(states):
            self.params[m, :start] = np.concatenate([t.reshape(-1) for t in self._blocks(state)])
        self.grads = np.zeros((M, self.size), dtype=dt)  # (M, P)
        self._moments = np.zeros_like(self.params), np.zeros_like(self.params)  # Adam's first and second moments
        self._work: _Work | None = None
        self.keep(1)
        self.checked = False

    def view(self, flat: np.ndarray, k: int, block: str, *shape: int) -> np.ndarray:
        """Block ``block`` of the first ``k`` rows of a flat ``(M, P)`` buffer, as a ``(k, *shape)`` view."""
        start = self.offsets[block]
        out = flat[:k, start:start + math.prod(shape)].reshape(k, *shape)
        assert np.shares_memory(out, flat)  # a view, never a copy: the step writes through it
        return out

    def _blocks(self, state: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = []
        if self.attention:
            out.append(np.stack([state[f"{layer}.{row}"].reshape(-1) for layer in ("enc_attn", "dec_attn")
                                 for row in _ATTN_ROWS]))
            out.append(np.concatenate([state["enc_attn.out.bias"], state["dec_attn.out.bias"]]))
        for _, layers, _, _ in _linears(self.cfg):
            out.append(np.concatenate([np.concatenate([state[f"{n}.weight"], state[f"{n}.bias"][:, None]], axis=1)
                                       for n in layers]))
        return out

    def state_dict(self, slot: int) -> dict[str, np.ndarray]:
        """Fit ``slot``'s weights under :class:`battgen.model.CVAE`'s parameter names."""
        cfg, out = self.cfg, {}
        if self.attention:
            H, D = cfg.num_heads, cfg.embedding_dim
            blk = self.view(self.params, slot + 1, "attn", 2, 7, H * D)[slot]
            bo = self.view(self.params, slot + 1, "attn_bo", 2)[slot]
            for i, layer in enumerate(("enc_attn", "dec_attn")):
                for r, row in enumerate(_ATTN_ROWS):
                    shape = (1, H * D) if row == "out.weight" else (H * D, 1) if row.endswith("weight") else (H * D,)
                    out[f"{layer}.{row}"] = blk[i, r].reshape(shape).copy()
                out[f"{layer}.out.bias"] = bo[i:i + 1].copy()
        for block, layers, n_out, n_in in _linears(cfg):
            W = self.view(self.params, slot + 1, block, n_out, n_in + 1)[slot]
            rows = n_out // len(layers)
            for j, name in enumerate(layers):
                out[f"{name}.weight"] = W[j * rows:(j + 1) * rows, :n_in].copy()
                out[f"{name}.bias"] = W[j * rows:(j + 1) * rows, n_in].copy()
        return out

    # ------------------------------------------------------------------ the attention layer
    @staticmethod
    def _attend(a: _AttnWork, w: _Work, P: np.ndarray) -> None:
        """:meth:`battgen.model.UnitCrossAttention.forward` of one layer on the query units ``ReLU(P)``:
        ``a.out = alpha * g + beta``."""
        n = kernels.attend_args(P, *a.args)
        np.exp2(a.buf[:n], out=a.buf[:n])  # every block's unnormalised softmax weights
        kernels.attend_read(*a.read)

    @staticmethod
    def _attend_back(a: _AttnWork, w: _Work, dy: np.ndarray, dP: np.ndarray, first: bool) -> None:
        """Gradients of :meth:`_attend` for ``dy`` = d loss / d out: ``dP`` = d loss / d ``P``, ``a.dscal``, and
        d loss / d C added to ``w.dC`` (set if ``first``)."""
        kernels.attend_back(dy, *a.back, dP, w.dC, a.dscal, first)

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

    def kept_terms(self, n: int, rows: np.ndarray, X: np.ndarray, w: np.ndarray, beta: np.ndarray | None) -> np.ndarray:
        """:func:`battgen.loss.loss_terms` of the batches of the last ``n`` steps (kept in slots
        ``[0, n)``), (3, n, M); ``rows`` (n, M * B), ``w`` (n, M, B) and ``beta`` are those steps'.
        Entries of fits that were not training are meaningless."""
        cfg, M, B, L = self.cfg, len(self.params), self.batch_size, self.cfg.latent_dim
        x = np.take(X, rows, axis=0).reshape(n, M, B, -1)[..., : cfg.feature_dim]  # (n, M, B, F)
        xh, zs = self.kept_xh[:n], self.kept_zs[:n]
        w, beta = np.asarray(w, dtype=self.dtype), None if beta is None else np.asarray(beta, dtype=self.dtype)
        with np.errstate(all="ignore"):  # the meaningless entries (padding only: 0 / 0) may be NaN
            return loss_terms(cfg, x, xh, zs[..., :L], zs[..., L:], w, self.free_bits, beta)

    def step(self, k: int, rows: np.ndarray, X: np.ndarray, C: np.ndarray, eps: np.ndarray, w: np.ndarray,
             beta: np.ndarray | None = None, slot: int = 0) -> None:
        """Forward and backward of fits ``[0, k)``; gradients go to ``self.grads[:k]``.

        ``rows`` (k * B,) index the batch's rows in ``X`` (n, F + 1) scaled features and ``C``
        (n, 2 + 1) scaled conditions, both with a last column of ones; ``eps`` (k, B, L) is the
        reparameterisation noise, ``w`` (k, B) the row weights, ``beta`` (k,) the KL weights if
        annealing. The reconstruction and the posterior go to slot ``slot`` of the kept outputs
        (:meth:`keep`), whose loss :meth:`kept_terms` computes for many steps at once.
        """
        cfg, wk, K = self.cfg, self._work_for(k), kernels
        I, c = cfg.intermediate_dim, wk.consts
        WT, Win, G = wk.WT, wk.Win, wk.G
        K.gather(X, rows, wk.xa3)
        K.gather(C, rows, wk.ca3)
        # forward: condition embedding, encoder, posterior, decoder
        np.matmul(wk.ca3, WT["cond_embed"], out=wk.Pc)  # (k, B, E)
        np.matmul(wk.xa3, WT["enc_hidden"], out=wk.Pe)  # (k, B, I)
        if self.attention:
            K.condition_lists(wk.Pc, wk.C, wk.Cc, wk.Cc2, wk.Cidx, wk.Cstat, c)  # C = ReLU(Pc) and its non-zero units
            K.attention_scalars(wk.blk, wk.bo, c, wk.pairs, wk.ac, wk.beta)
            self._attend(wk.layers[0], wk, wk.Pe)  # writes wk.He = ReLU(Pe) and wk.Ae[..., :I]
        else:
            K.activate(wk.Pc, wk.C, 1, c)
            K.activate(wk.Pe, wk.He, 1, c)
            wk.Ad[..., I:-1] = wk.C  # the decoder reads the same condition embedding
        np.matmul(wk.Ae, WT["z"], out=wk.zs)  # (k, B, 2L): z_mean | z_logvar
        K.reparameterise(wk.zs, eps, wk.se, wk.za, c)
        np.matmul(wk.za, WT["dec_hidden"], out=wk.Pd)  # (k, B, I)
        if self.attention:
            self._attend(wk.layers[1], wk, wk.Pd)  # writes wk.Hd = ReLU(Pd) and wk.Ad[..., :I]
        else:
            K.activate(wk.Pd, wk.Hd, 1, c)
        np.matmul(wk.Ad, WT["dec_out"], out=wk.Po)  # (k, B, F)
        if self.sigmoid:
            K.activate(wk.Po, wk.xh, 2, c)
        xh = wk.xh if self.sigmoid else wk.Po

        # the loss: loss_grads' gradient now, loss_terms' values later (kept_terms)
        self.kept_xh[slot, :k] = xh
        self.kept_zs[slot, :k] = wk.zs
        w, beta = np.asarray(w, dtype=self.dtype), None if beta is None else np.asarray(beta, dtype=self.dtype)
        if not self.checked:
            check_loss_grads(cfg, wk.x, xh, wk.mu, wk.logvar, w, self.free_bits, beta)
            self.checked = True
        d_out, d_mu, d_logvar = loss_grads(cfg, wk.x, xh, wk.mu, wk.logvar, w, self.free_bits, beta)  # (k, B, F), (k, B, L) x 2

        # backward: decoder, posterior, encoder, condition embedding
        if self.sigmoid:
            K.activate_back(d_out, xh, 2, d_out, c)
        np.matmul(d_out.transpose(0, 2, 1), wk.Ad, out=G["dec_out"])
        np.matmul(d_out, Win["dec_out"], out=wk.dAd)  # (k, B, A)
        if self.attention:
            self._attend_back(wk.layers[1], wk, wk.dAd, wk.dPd, True)
        else:
            K.activate_back(wk.dHd, wk.Hd, 1, wk.dPd, c)  # (k, B, I)
        np.matmul(wk.dPd.transpose(0, 2, 1), wk.za, out=G["dec_hidden"])
        np.matmul(wk.dPd, Win["dec_hidden"], out=wk.dz)  # (k, B, L)
        K.reparameterise_back(d_mu, d_logvar, wk.dz, wk.se, wk.dZ, c)  # (k, B, 2L)
        np.matmul(wk.dZ.transpose(0, 2, 1), wk.Ae, out=G["z"])
        np.matmul(wk.dZ, Win["z"], out=wk.dAe)  # (k, B, A)
        if self.attention:
            self._attend_back(wk.layers[0], wk, wk.dAe, wk.dPe, False)  # d loss / d C of both layers in wk.dC
            K.attention_grads(wk.dscal, wk.blk, c, wk.gblk, wk.gbo)
        else:
            np.add(wk.dAe[..., I:], wk.dAd[..., I:], out=wk.dC)
            K.activate_back(wk.dHe, wk.He, 1, wk.dPe, c)  # (k, B, I)
        np.matmul(wk.dPe.transpose(0, 2, 1), wk.xa3, out=G["enc_hidden"])
        K.activate_back(wk.dC, wk.C, 1, wk.dPc, c)  # (k, B, E)
        np.matmul(wk.dPc.transpose(0, 2, 1), wk.ca3, out=G["cond_embed"])

    def adam(self, k: int, lr_t: float, beta1: float, beta2: float, eps: float) -> None:
        """One Adam update of fits ``[0, k)`` with the step size ``lr_t`` (bias correction included)."""
        coef = np.array([lr_t, beta1, 1 - beta1, beta2, 1 - beta2, eps], dtype=self.dtype)
        kernels.adam(self.params, self.grads, *self._moments, k, coef)
