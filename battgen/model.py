"""The paper's conditional VAE with cross-attention, in PyTorch.

Structure (Tao et al. 2024, Methods; the authors' Keras ``conditional_vae``):

- condition ``c = [SOC, SOH]`` (MinMax-scaled) -> ``C = ReLU(Linear(2, 64))``, shared by encoder
  and decoder;
- encoder: ``H = ReLU(Linear(21, 64))``; cross-attention in which each of the 64 embedding units
  is a token of size 1 (query from ``H``, key and value from ``C``); linear ``z_mean`` and
  ``z_logvar`` (latent dim 2);
- decoder: ``ReLU(Linear(2, 64))``; a second cross-attention on the same ``C``;
  ``sigmoid(Linear(64, 21))``.

The cross-attention is Keras ``MultiHeadAttention(num_heads=1, key_dim=64)`` applied to
``(B, 64, 1)`` tensors: every scalar unit is projected to a 64-vector, so the attention map is
``(B, 64, 64)``: how much each hidden unit reads from each condition-embedding unit. With the
Keras initialisation (Glorot-uniform weights, zero biases) the model has 4,315 parameters.

This module is the network as the book reads it and as the tests hold the trainer to. Training
and generation do not run it: :mod:`battgen.fused` (the training step), :mod:`battgen.weights`
(initial weights drawn with NumPy, the same distributions; encode and decode) and
:mod:`battgen.loss` compute the same functions on NumPy arrays, without importing torch, and a
fitted generator builds this module from its weights when the book looks inside it.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from battgen.config import CVAEConfig
from battgen.loss import loss_grads, loss_terms  # the one loss, torch-free (the trainer runs on NumPy)

__all__ = ["CVAEConfig", "UnitCrossAttention", "CVAE", "loss_terms", "loss_grads", "set_seed", "count_parameters"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch in one place."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, as Keras ``Dense`` and ``MultiHeadAttention``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class _SoftmaxRead(torch.autograd.Function):
    """``g_i = sum_j softmax_j(s_i C_j) C_j`` in four passes over the (..., Tq, Tk) tensor.

    The logits are outer products ``s_i * C_j``, so their row maximum needs no pass over them
    (``s_i * max C`` or ``s_i * min C``), one ``exp`` pass gives the unnormalised weights ``E``, and
    one batched product ``E @ [1, C, C^2]`` gives the normaliser, ``g`` and the second moment.
    The gradients have closed forms: ``dg_i/ds_i = sum_j att_ij C_j^2 - g_i^2`` and
    ``dg_i/dC_j = att_ij (1 + s_i (C_j - g_i))``, one more batched product. Checked against
    autograd by ``torch.autograd.gradcheck`` in the tests.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(s: torch.Tensor, C: torch.Tensor):
        row_max = torch.where(s >= 0, s * C.amax(-1, keepdim=True), s * C.amin(-1, keepdim=True))  # (..., Tq)
        E = torch.addcmul(-row_max.unsqueeze(-1), s.unsqueeze(-1), C.unsqueeze(-2)).exp_()  # (..., Tq, Tk)
        moments = E @ torch.stack([torch.ones_like(C), C, C * C], dim=-1)  # (..., Tq, 3)
        Z = moments[..., 0]  # (..., Tq)
        return moments[..., 1] / Z, E, Z, moments[..., 2] / Z  # g, E, Z, second moment

    @staticmethod
    def setup_context(ctx, inputs, output):
        s, C = inputs
        g, E, Z, second = output
        ctx.save_for_backward(s, C, g, E, Z, second)
        ctx.mark_non_differentiable(E, Z, second)

    @staticmethod
    def backward(ctx, dg: torch.Tensor, *_unused: torch.Tensor):
        s, C, g, E, Z, second = ctx.saved_tensors
        ds = dg * (second - g * g)  # (..., Tq)
        w = dg / Z  # (..., Tq)
        R = E.transpose(-2, -1) @ torch.stack([w, w * s, w * s * g], dim=-1)  # (..., Tk, 3)
        dC = R[..., 0] + C * R[..., 1] - R[..., 2]  # (..., Tk)
        return ds, dC


class UnitCrossAttention(nn.Module):
    """Cross-attention whose tokens are the units of a vector (each token has size 1).

    ``query`` (B, Tq) and ``context`` (B, Tk) are read as (B, Tq, 1) and (B, Tk, 1) sequences;
    each scalar is projected to ``num_heads * key_dim`` features, scaled dot-product attention
    runs over the Tk context tokens, and an output projection maps back to one scalar per query
    token. Parameters: 3 * (key_dim*H + key_dim*H) + (key_dim*H + 1) = 449 for H=1, key_dim=64.
    """

    def __init__(self, key_dim: int = 64, num_heads: int = 1):
        super().__init__()
        self.key_dim, self.num_heads = key_dim, num_heads
        width = key_dim * num_heads
        self.query = nn.Linear(1, width)
        self.key = nn.Linear(1, width)
        self.value = nn.Linear(1, width)
        self.out = nn.Linear(width, 1)

    def forward(self, query: torch.Tensor, context: torch.Tensor, need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Exact attention in O(B * Tq * Tk) instead of O(B * Tq * Tk * D).

        With size-1 tokens, ``q_i = h_i wq + bq`` and ``k_j = C_j wk + bk``, so the logit
        ``q_i . k_j / sqrt(D) = C_j (a h_i + c) + (terms constant in j)`` with
        ``a = wq.wk / sqrt(D)``, ``c = bq.wk / sqrt(D)``; the constant terms cancel in the
        softmax (so ``bk`` has no effect, as in Keras). Since each row sums to 1, the output
        ``sum_j att_ij (C_j wv + bv) . wo + bo`` is ``alpha * sum_j att_ij C_j + beta``. Same
        function and gradients as :meth:`forward_naive`, 64x fewer multiplications. Returns
        ``(y, attention map or None)``.
        """
        H = self.num_heads
        a, c, alpha, beta = self.scalars()  # (H,), (H,), (H,), (1,)
        slope = a[:, None] * query[:, None, :] + c[:, None]  # (B, H, Tq)
        tokens = context[:, None, :].expand(-1, H, -1)  # (B, H, Tk)
        read, E, Z, _ = _SoftmaxRead.apply(slope, tokens)  # (B, H, Tq), (B, H, Tq, Tk), (B, H, Tq)
        y = (alpha[:, None] * read).sum(dim=1) + beta  # (B, Tq)
        if not need_weights:
            return y, None
        att = E.detach() / Z.detach().unsqueeze(-1)  # (B, H, Tq, Tk), rows sum to 1
        return y, att.mean(dim=1)  # (B, Tq), (B, Tq, Tk)

    def scalars(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a, c, alpha, beta)``: the numbers that fix the layer (see :meth:`forward`).

        Per head, the logit slope ``a = wq.wk / sqrt(D)`` and offset ``c = bq.wk / sqrt(D)``, the
        read-out gain ``alpha = wv.wo``; ``beta = sum_h bv_h.wo_h + bo`` is the layer's offset.
        Shapes (H,), (H,), (H,), (1,).
        """
        H, D = self.num_heads, self.key_dim
        wq, bq = self.query.weight.view(H, D), self.query.bias.view(H, D)  # (H, D) each
        wk = self.key.weight.view(H, D)  # (H, D)
        wv, bv = self.value.weight.view(H, D), self.value.bias.view(H, D)  # (H, D) each
        wo = self.out.weight.view(H, D)  # (H, D)
        a = (wq * wk).sum(-1) / math.sqrt(D)  # (H,)
        c = (bq * wk).sum(-1) / math.sqrt(D)  # (H,)
        alpha = (wv * wo).sum(-1)  # (H,)
        beta = (bv * wo).sum() + self.out.bias  # (1,)
        return a, c, alpha, beta

    def logits(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Textbook attention logits ``q_i . k_j / sqrt(D)``, (B, H, Tq, Tk), for teaching and checks."""
        B, Tq = query.shape
        Tk = context.shape[1]
        H, D = self.num_heads, self.key_dim
        q = self.query(query.unsqueeze(-1)).view(B, Tq, H, D).transpose(1, 2)  # (B, H, Tq, D)
        k = self.key(context.unsqueeze(-1)).view(B, Tk, H, D).transpose(1, 2)  # (B, H, Tk, D)
        return (q @ k.transpose(-2, -1)) / math.sqrt(D)  # (B, H, Tq, Tk)

    def forward_naive(self, query: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Textbook multi-head attention on (B, T, 1) sequences, as Keras computes it."""
        B, Tq = query.shape
        Tk = context.shape[1]
        H, D = self.num_heads, self.key_dim
        v = self.value(context.unsqueeze(-1)).view(B, Tk, H, D).transpose(1, 2)  # (B, H, Tk, D)
        att = self.logits(query, context).softmax(dim=-1)  # (B, H, Tq, Tk)
        y = (att @ v).transpose(1, 2).reshape(B, Tq, H * D)  # (B, Tq, H*D)
        y = self.out(y).squeeze(-1)  # (B, Tq)
        return y, att.mean(dim=1)  # (B, Tq), (B, Tq, Tk)


class CVAE(nn.Module):
    """Conditional VAE with cross-attention conditioning (Tao et al. 2024)."""

    def __init__(self, config: CVAEConfig | None = None):
        super().__init__()
        self.config = cfg = config or CVAEConfig()
        if cfg.conditioning not in {"attention", "concat"}:
            raise ValueError(f"conditioning must be 'attention' or 'concat', got {cfg.conditioning!r}")
        if cfg.output not in {"sigmoid", "linear"}:
            raise ValueError(f"output must be 'sigmoid' or 'linear', got {cfg.output!r}")
        concat = cfg.embedding_dim if cfg.conditioning == "concat" else 0
        self.cond_embed = nn.Linear(cfg.condition_dim, cfg.embedding_dim)
        self.enc_hidden = nn.Linear(cfg.feature_dim, cfg.intermediate_dim)
        self.dec_hidden = nn.Linear(cfg.latent_dim, cfg.intermediate_dim)
        if cfg.conditioning == "attention":
            self.enc_attn = UnitCrossAttention(cfg.embedding_dim, cfg.num_heads)
            self.dec_attn = UnitCrossAttention(cfg.embedding_dim, cfg.num_heads)
        self.z_mean = nn.Linear(cfg.intermediate_dim + concat, cfg.latent_dim)
        self.z_logvar = nn.Linear(cfg.intermediate_dim + concat, cfg.latent_dim)
        self.dec_out = nn.Linear(cfg.intermediate_dim + concat, cfg.feature_dim)
        _keras_init(self)

    def embed_condition(self, c: torch.Tensor) -> torch.Tensor:
        return F.relu(self.cond_embed(c))  # (B, E)

    def _condition(self, h: torch.Tensor, C: torch.Tensor, attn: nn.Module | None, need_weights: bool):
        if attn is None:  # ablation: concatenate the condition embedding instead of attending to it
            return torch.cat([h, C], dim=-1), None  # (B, I+E)
        return attn(h, C, need_weights)  # (B, I), (B, I, E) or None

    def hidden(self, x: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors attention reads: condition embedding ``C`` (B, E), encoder hidden units
        ``h_enc`` (B, I), posterior mean ``mu`` (B, L) and decoder hidden units at it ``h_dec`` (B, I)."""
        mu, _, _ = self.encode(x, c)  # (B, L)
        return {"C": self.embed_condition(c), "h_enc": F.relu(self.enc_hidden(x)), "mu": mu,
                "h_dec": F.relu(self.dec_hidden(mu))}

    def encode(self, x: torch.Tensor, c: torch.Tensor, return_attention: bool = False):
        """Return ``(z_mean, z_logvar, encoder attention map or None)``."""
        C = self.embed_condition(c)  # (B, E)
        h = F.relu(self.enc_hidden(x))  # (B, I)
        a, att = self._condition(h, C, getattr(self, "enc_attn", None), return_attention)  # (B, I), (B, I, E)
        return self.z_mean(a), self.z_logvar(a), att  # (B, L), (B, L), (B, I, E)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, L)

    def decode(self, z: torch.Tensor, c: torch.Tensor, return_attention: bool = False):
        C = self.embed_condition(c)  # (B, E)
        h = F.relu(self.dec_hidden(z))  # (B, I)
        a, att = self._condition(h, C, getattr(self, "dec_attn", None), return_attention)  # (B, I), (B, I, E)
        out = self.dec_out(a)  # (B, F)
        out = torch.sigmoid(out) if self.config.output == "sigmoid" else out
        return (out, att) if return_attention else out

    def forward(self, x: torch.Tensor, c: torch.Tensor, return_attention: bool = False):
        """Return ``(x_hat, z_mean, z_logvar, extras)``; ``extras`` holds the attention maps if asked."""
        mu, logvar, enc_att = self.encode(x, c, return_attention)  # (B, L), (B, L), (B, I, E)
        z = self.reparameterize(mu, logvar)  # (B, L)
        if not return_attention:
            return self.decode(z, c), mu, logvar, {}  # (B, F), (B, L), (B, L)
        x_hat, dec_att = self.decode(z, c, return_attention=True)  # (B, F), (B, I, E)
        return x_hat, mu, logvar, {"encoder_attention": enc_att, "decoder_attention": dec_att}

    def loss(self, x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
        """The paper's loss on a batch (:func:`loss_terms` with every row weighted 1)."""
        loss, recon, kl = loss_terms(self.config, x, x_hat, mu, logvar, torch.ones(x.shape[0], dtype=x.dtype))
        return {"loss": loss, "recon": recon, "kl": kl}
