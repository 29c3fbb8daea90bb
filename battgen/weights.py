"""The CVAE's weights as NumPy arrays: names and shapes, the initialisation, and the inference passes.

A trained generator is a dict of float32 arrays under :class:`battgen.model.CVAE`'s parameter
names (``model.load_state_dict`` takes it as it is). Training (:mod:`battgen.fused`) and
generation (:func:`encode`, :func:`decode`) run on these arrays in NumPy, so fitting a generator
and generating pulses never import torch; :class:`battgen.model.CVAE` is the same network in
PyTorch, which the book reads and the tests hold these functions to (``tests/test_weights.py``).

Initialisation (:func:`initial`): the Keras initialisation of :class:`battgen.model.CVAE`,
Glorot-uniform weights (``U(-l, l)``, ``l = sqrt(6 / (fan_in + fan_out))``) and zero biases, drawn
with NumPy from the fit's seed. The two attention layers are the factorised
:meth:`battgen.model.UnitCrossAttention.forward`: with size-1 tokens the logits are
``C_j (a h_i + c)`` and the read-out ``alpha * sum_j att_ij C_j + beta``.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from battgen.config import CVAEConfig

__all__ = ["shapes", "initial", "encode", "decode", "INIT_STREAM"]

INIT_STREAM = 1
"""A fit with seed ``s`` draws its initial weights from ``numpy.random.default_rng((s, INIT_STREAM))``."""
_ATTENTION = (("query", "weight"), ("query", "bias"), ("key", "weight"), ("key", "bias"), ("value", "weight"),
              ("value", "bias"), ("out", "weight"), ("out", "bias"))
_ROWS = 256
"""Rows per block in :func:`encode` and :func:`decode` (an attention block holds (rows, heads, 64, 64) floats)."""

Weights = Mapping[str, np.ndarray]


def shapes(cfg: CVAEConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape, in the order of :class:`battgen.model.CVAE`'s ``state_dict``."""
    E, I, F, L, Cd = cfg.embedding_dim, cfg.intermediate_dim, cfg.feature_dim, cfg.latent_dim, cfg.condition_dim
    A = I if cfg.conditioning == "attention" else I + E  # what z_mean, z_logvar and dec_out read
    out: dict[str, tuple[int, ...]] = {}
    for name, n_out, n_in in (("cond_embed", E, Cd), ("enc_hidden", I, F), ("dec_hidden", I, L)):
        out[f"{name}.weight"], out[f"{name}.bias"] = (n_out, n_in), (n_out,)
    if cfg.conditioning == "attention":
        HD = cfg.num_heads * E
        for layer in ("enc_attn", "dec_attn"):
            for part, kind in _ATTENTION:
                n_out, n_in = (1, HD) if part == "out" else (HD, 1)
                out[f"{layer}.{part}.{kind}"] = (n_out, n_in) if kind == "weight" else (n_out,)
    for name, n_out in (("z_mean", L), ("z_logvar", L), ("dec_out", F)):
        out[f"{name}.weight"], out[f"{name}.bias"] = (n_out, A), (n_out,)
    return out


def initial(cfg: CVAEConfig, seed: int) -> dict[str, np.ndarray]:
    """A fit's initial weights (float32): Glorot-uniform weights and zero biases, drawn in ``state_dict`` order."""
    rng = np.random.default_rng((int(seed), INIT_STREAM))
    out = {}
    for name, shape in shapes(cfg).items():
        if name.endswith("weight"):
            limit = math.sqrt(6.0 / (shape[0] + shape[1]))  # fan_out + fan_in of an (out, in) weight
            out[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
        else:
            out[name] = np.zeros(shape, dtype=np.float32)
    return out


def check(weights: Weights, cfg: CVAEConfig) -> dict[str, np.ndarray]:
    """``weights`` as float32 arrays, or ``ValueError`` naming the first missing, unexpected or misshapen one."""
    want = shapes(cfg)
    extra = sorted(set(weights) - set(want))
    if extra:
        raise ValueError(f"unexpected weight {extra[0]!r} for this network")
    out = {}
    for name, shape in want.items():
        if name not in weights:
            raise ValueError(f"missing weight {name!r}")
        value = np.asarray(weights[name], dtype=np.float32)
        if value.shape != shape:
            raise ValueError(f"weight {name!r} has shape {value.shape}, expected {shape}")
        out[name] = value
    return out


def _linear(W: Weights, name: str, x: np.ndarray) -> np.ndarray:
    return x @ W[f"{name}.weight"].T + W[f"{name}.bias"]  # (B, out)


def _attend(W: Weights, layer: str, cfg: CVAEConfig, h: np.ndarray, C: np.ndarray) -> np.ndarray:
    """:meth:`battgen.model.UnitCrossAttention.forward` of ``layer``: query units ``h`` (B, I), context ``C`` (B, E)."""
    H, D = cfg.num_heads, cfg.embedding_dim
    wq, bq = W[f"{layer}.query.weight"].reshape(H, D), W[f"{layer}.query.bias"].reshape(H, D)  # (H, D) each
    wk = W[f"{layer}.key.weight"].reshape(H, D)  # (H, D)
    wv, bv = W[f"{layer}.value.weight"].reshape(H, D), W[f"{layer}.value.bias"].reshape(H, D)  # (H, D) each
    wo = W[f"{layer}.out.weight"].reshape(H, D)  # (H, D)
    a = (wq * wk).sum(-1) / np.float32(math.sqrt(D))  # (H,) logit slope
    c = (bq * wk).sum(-1) / np.float32(math.sqrt(D))  # (H,) logit offset
    alpha, beta = (wv * wo).sum(-1), (bv * wo).sum() + W[f"{layer}.out.bias"]  # (H,), (1,)
    B, I = h.shape
    slope = a[:, None] * h[:, None, :] + c[:, None]  # (B, H, I)
    top = np.where(slope >= 0, slope * C.max(-1)[:, None, None], slope * C.min(-1)[:, None, None])  # (B, H, I) row maxima
    att = np.multiply(slope[..., None], C[:, None, None, :])  # (B, H, I, E) logits: outer products
    att -= top[..., None]
    np.exp(att, out=att)  # (B, H, I, E) unnormalised weights
    moments = att.reshape(B, H * I, -1) @ np.stack([np.ones_like(C), C], axis=-1)  # (B, H*I, 2) sum_j att_ij [1, C_j]
    read = (moments[..., 1] / moments[..., 0]).reshape(B, H, I)  # (B, H, I) sum_j softmax_ij C_j
    return (alpha[:, None] * read).sum(1) + beta  # (B, I)


def _condition(W: Weights, cfg: CVAEConfig, layer: str, h: np.ndarray, C: np.ndarray) -> np.ndarray:
    if cfg.conditioning == "attention":
        return _attend(W, layer, cfg, h, C)  # (B, I)
    return np.concatenate([h, C], axis=-1)  # (B, I + E) the ablation: the condition embedding concatenated


def _blocks(n: int):
    return (slice(i, min(i + _ROWS, n)) for i in range(0, n, _ROWS))


def encode(W: Weights, cfg: CVAEConfig, x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and log-variance, (n, L) each, of scaled features ``x`` (n, F) at scaled conditions ``c`` (n, 2)."""
    x, c = np.atleast_2d(x).astype(np.float32), np.atleast_2d(c).astype(np.float32)
    mus, logvars = [], []
    for rows in _blocks(len(x)):
        C = np.maximum(_linear(W, "cond_embed", c[rows]), 0)  # (B, E)
        h = np.maximum(_linear(W, "enc_hidden", x[rows]), 0)  # (B, I)
        a = _condition(W, cfg, "enc_attn", h, C)  # (B, A)
        mus.append(_linear(W, "z_mean", a))  # (B, L)
        logvars.append(_linear(W, "z_logvar", a))  # (B, L)
    L = cfg.latent_dim
    return (np.concatenate(mus) if mus else np.zeros((0, L), np.float32)), \
        (np.concatenate(logvars) if logvars else np.zeros((0, L), np.float32))


def decode(W: Weights, cfg: CVAEConfig, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Scaled features (n, F) decoded from latent codes ``z`` (n, L) at scaled conditions ``c`` (n, 2)."""
    z, c = np.atleast_2d(z).astype(np.float32), np.atleast_2d(c).astype(np.float32)
    outs = []
    for rows in _blocks(len(z)):
        C = np.maximum(_linear(W, "cond_embed", c[rows]), 0)  # (B, E)
        h = np.maximum(_linear(W, "dec_hidden", z[rows]), 0)  # (B, I)
        out = _linear(W, "dec_out", _condition(W, cfg, "dec_attn", h, C))  # (B, F)
        outs.append(0.5 + 0.5 * np.tanh(0.5 * out) if cfg.output == "sigmoid" else out)  # the sigmoid, without overflow
    return np.concatenate(outs) if outs else np.zeros((0, cfg.feature_dim), np.float32)
