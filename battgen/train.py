"""Fitting the CVAE: scaling, mini-batch Adam, several fits trained at once, save and load.

The paper's recipe (and the authors' Keras defaults): features MinMax-scaled on the training
rows; conditions ``[SOC, SOH]`` MinMax-scaled on the training conditions together with the
conditions that will be generated (the authors fit that scaler on train and test conditions);
Adam with learning rate 1e-3 (Keras: beta 0.9 / 0.999, epsilon 1e-7); 50 epochs of shuffled
mini-batches of 32.

The model has 4,315 parameters, so one optimiser step costs far more in framework overhead than
in arithmetic. :func:`fit_generators` therefore trains many independent fits as one stacked
model (``torch.func.vmap`` over the parameters): every fit keeps its own data, initialisation,
shuffling, noise and optimiser state, and a fit that has taken all its steps stops updating
(fits are ordered by length, so the active ones are always a prefix of the stack).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from battgen.io import atomic_path, progress_enabled
from battgen.model import CVAE, CVAEConfig, loss_terms

__all__ = ["TrainConfig", "MinMaxScaler", "FitJob", "FittedCVAE", "feature_scaler_for", "fit_generator", "fit_generators"]

FORMAT_VERSION = 1


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the paper's (Keras defaults for Adam)."""

    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-7
    threads: int | None = None  # torch intra-op threads; None keeps torch's default (all cores)
    free_bits: float = 0.0  # KL floor per latent dimension in nats, on the batch mean (0: the paper's plain KL)
    kl_anneal_epochs: int = 0  # ramp the KL weight linearly from 1/n to 1 over the first n epochs (0: paper, no ramp)


@dataclass
class MinMaxScaler:
    """Column-wise min-max scaling to [0, 1] (as scikit-learn's, constant columns map to 0)."""

    data_min: np.ndarray
    data_max: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "MinMaxScaler":
        x = np.asarray(x, dtype=float)
        return cls(x.min(axis=0), x.max(axis=0))

    @property
    def scale(self) -> np.ndarray:
        rng = self.data_max - self.data_min
        return np.where(rng > 0, rng, 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self.data_min) / self.scale

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) * self.scale + self.data_min

    def to_dict(self) -> dict:
        return {"data_min": self.data_min.tolist(), "data_max": self.data_max.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "MinMaxScaler":
        return cls(np.asarray(d["data_min"], dtype=float), np.asarray(d["data_max"], dtype=float))


@dataclass
class FitJob:
    """One generator to fit: training rows (volts; [SOC fraction, SOH]) and a seed.

    ``extra_conditions`` join the training conditions when the condition scaler is fitted: the
    paper's protocol passes the conditions it will generate at.
    """

    features: np.ndarray  # (n, 21) volts
    conditions: np.ndarray  # (n, 2): SOC as a fraction, SOH
    seed: int = 0
    extra_conditions: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    feature_bounds: tuple[float, float] | None = None  # fixed feature scaler (volts), e.g. (1.5, 5.0); None: MinMax on the rows


def feature_scaler_for(job: FitJob) -> MinMaxScaler:
    """The job's feature scaler: MinMax on its rows (paper), or the fixed range ``job.feature_bounds``."""
    if job.feature_bounds is None:
        return MinMaxScaler.fit(job.features)
    lo, hi = (float(v) for v in job.feature_bounds)
    if not hi > lo:
        raise ValueError(f"feature_bounds must be (low, high) with high > low, got {job.feature_bounds!r}")
    width = np.asarray(job.features).shape[1]
    return MinMaxScaler(np.full(width, lo), np.full(width, hi))


@dataclass
class FittedCVAE:
    """A trained generator: the model plus everything needed to use it in physical units."""

    model: CVAE
    feature_scaler: MinMaxScaler
    condition_scaler: MinMaxScaler
    train_config: TrainConfig
    history: dict[str, list[float]]  # per-epoch mean of "loss", "recon", "kl"
    provenance: dict[str, Any]

    @property
    def config(self) -> CVAEConfig:
        return self.model.config

    def scaled_features(self, features: np.ndarray) -> torch.Tensor:
        """Features in volts as the network sees them (scaled), (n, 21) float32."""
        return torch.as_tensor(self.feature_scaler.transform(np.atleast_2d(features)), dtype=torch.float32)

    def scaled_conditions(self, conditions: np.ndarray) -> torch.Tensor:
        """``[SOC fraction, SOH]`` as the network sees them (scaled), (n, 2) float32."""
        return torch.as_tensor(self.condition_scaler.transform(np.atleast_2d(conditions)), dtype=torch.float32)

    @torch.no_grad()
    def hidden(self, features: np.ndarray, conditions: np.ndarray) -> dict[str, torch.Tensor]:
        """:meth:`battgen.model.CVAE.hidden` for rows in physical units."""
        return self.model.hidden(self.scaled_features(features), self.scaled_conditions(conditions))

    @torch.no_grad()
    def encode(self, features: np.ndarray, conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and log-variance of the latent code for rows in physical units."""
        x = self.scaled_features(features)
        mu, logvar, _ = self.model.encode(x, self.scaled_conditions(conditions))  # (n, L), (n, L)
        return mu.numpy().astype(float), logvar.numpy().astype(float)

    @torch.no_grad()
    def decode(self, z: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Features in volts decoded from latent codes ``z`` at ``conditions`` ([SOC, SOH])."""
        out = self.model.decode(torch.as_tensor(np.atleast_2d(z), dtype=torch.float32), self.scaled_conditions(conditions))
        return self.feature_scaler.inverse_transform(out.numpy().astype(float))

    @torch.no_grad()
    def attention(self, features: np.ndarray, conditions: np.ndarray) -> dict[str, np.ndarray]:
        """Encoder and decoder attention maps, (n, 64, 64) each, for rows in physical units."""
        x = self.scaled_features(features)
        mu, _, enc = self.model.encode(x, self.scaled_conditions(conditions), return_attention=True)
        _, dec = self.model.decode(mu, self.scaled_conditions(conditions), return_attention=True)
        return {"encoder": enc.numpy(), "decoder": dec.numpy()}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save as ``path`` (weights, torch tensors only) plus ``path.json`` (config, scalers, provenance)."""
        path = Path(path)
        meta = {
            "format_version": FORMAT_VERSION,
            "model_config": self.config.to_dict(),
            "train_config": asdict(self.train_config),
            "feature_scaler": self.feature_scaler.to_dict(),
            "condition_scaler": self.condition_scaler.to_dict(),
            "history": self.history,
            "provenance": self.provenance,
        }
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)
        with atomic_path(_meta_path(path)) as tmp:
            tmp.write_text(json.dumps(meta, indent=2, default=_jsonable))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FittedCVAE":
        """Load what :meth:`save` wrote; weights are read with ``weights_only=True`` (no pickle code)."""
        path = Path(path)
        meta_file = _meta_path(path)
        if not path.is_file() or not meta_file.is_file():
            raise FileNotFoundError(f"{path}: a saved generator needs both {path.name} and {meta_file.name}")
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_file}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
        model = CVAE(CVAEConfig(**meta["model_config"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
        return cls(model, MinMaxScaler.from_dict(meta["feature_scaler"]), MinMaxScaler.from_dict(meta["condition_scaler"]),
                   TrainConfig(**meta["train_config"]), meta["history"], meta["provenance"])


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


# ---------------------------------------------------------------------- training


class _LossTerms(torch.nn.Module):
    """Per-fit loss terms for one mini-batch; vmapped over the stacked parameters."""

    def __init__(self, model: CVAE, free_bits: float = 0.0):
        super().__init__()
        self.m = model
        self.free_bits = float(free_bits)

    def forward(self, x, c, eps, w, beta=None):  # (B, F), (B, 2), (B, L), (B,), () KL-weight multiplier
        mu, logvar, _ = self.m.encode(x, c)  # (B, L), (B, L)
        z = mu + torch.exp(0.5 * logvar) * eps  # (B, L)
        x_hat = self.m.decode(z, c)  # (B, F)
        return loss_terms(self.m.config, x, x_hat, mu, logvar, w, self.free_bits, beta)  # (3,): loss, recon, kl


def _validate_job(i: int, job: FitJob, cfg: CVAEConfig) -> None:
    f, c = np.asarray(job.features), np.asarray(job.conditions)
    if f.ndim != 2 or f.shape[1] != cfg.feature_dim:
        raise ValueError(f"fit job {i}: features must have shape (n, {cfg.feature_dim}), got {f.shape}")
    if c.shape != (f.shape[0], cfg.condition_dim):
        raise ValueError(f"fit job {i}: conditions must have shape ({f.shape[0]}, {cfg.condition_dim}), got {c.shape}")
    if not (np.isfinite(f).all() and np.isfinite(c).all()):
        raise ValueError(f"fit job {i}: features and conditions must be finite (found NaN or inf)")
    if f.shape[0] < 2:
        raise ValueError(f"fit job {i}: need at least 2 training rows, got {f.shape[0]}")


def fit_generators(
    jobs: Sequence[FitJob],
    model_config: CVAEConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: bool | None = None,
) -> list[FittedCVAE]:
    """Fit one CVAE per job, all at once. Same jobs and seeds give the same generators.

    Each fit ``m`` is initialised with ``torch.manual_seed(seed_m)``, shuffles with
    ``numpy.random.default_rng(seed_m)`` and draws its reparameterisation noise from a torch
    generator seeded with ``seed_m``: a fit does not depend on which other fits share the stack.
    """
    cfg = model_config or CVAEConfig()
    tc = train_config or TrainConfig()
    if not jobs:
        return []
    for i, job in enumerate(jobs):
        _validate_job(i, job, cfg)
    if tc.threads:
        torch.set_num_threads(tc.threads)

    bs, E = tc.batch_size, tc.epochs
    f_scalers = [feature_scaler_for(j) for j in jobs]
    c_scalers = [MinMaxScaler.fit(np.vstack([j.conditions] + ([j.extra_conditions] if j.extra_conditions is not None else [])))
                 for j in jobs]
    sizes = np.array([len(j.features) for j in jobs])
    steps = E * np.ceil(sizes / bs).astype(int)  # optimiser steps per fit
    order = np.argsort(-steps, kind="stable")  # longest first: active fits are a prefix
    M, T, N = len(jobs), int(steps.max()), int(sizes.max())

    X = torch.zeros(M, N, cfg.feature_dim)  # (M, N, F) scaled features, padded
    C = torch.zeros(M, N, cfg.condition_dim)  # (M, N, 2) scaled conditions, padded
    idx = torch.zeros(M, T, bs, dtype=torch.long)  # (M, T, bs) row of each batch slot
    wts = torch.zeros(M, T, bs)  # (M, T, bs) 1 for a real slot, 0 for padding
    eps = torch.zeros(M, T, bs, cfg.latent_dim)  # (M, T, bs, L) reparameterisation noise
    models = []
    for slot, m in enumerate(order):
        job, n = jobs[m], sizes[m]
        X[slot, :n] = torch.as_tensor(f_scalers[m].transform(job.features), dtype=torch.float32)
        C[slot, :n] = torch.as_tensor(c_scalers[m].transform(job.conditions), dtype=torch.float32)
        rng = np.random.default_rng(job.seed)
        nb = math.ceil(n / bs)
        perms = np.zeros((E, nb * bs), dtype=np.int64)  # each epoch's shuffled rows, padded to whole batches
        perms[:, :n] = np.stack([rng.permutation(n) for _ in range(E)])
        idx[slot, : steps[m]] = torch.as_tensor(perms.reshape(E * nb, bs))
        wts[slot, : steps[m]] = torch.as_tensor(np.arange(nb * bs) < n, dtype=torch.float32).view(nb, bs).repeat(E, 1)
        gen = torch.Generator().manual_seed(job.seed)
        eps[slot, : steps[m]] = torch.randn(int(steps[m]), bs, cfg.latent_dim, generator=gen)
        torch.manual_seed(job.seed)
        models.append(CVAE(cfg))

    params, _ = stack_module_state(models)  # name -> (M, ...) leaf tensors
    base = _LossTerms(copy.deepcopy(models[0]).to("meta"), tc.free_bits)
    names = list(params)
    batched = vmap(lambda p, x, c, e, w: functional_call(base, {f"m.{k}": v for k, v in zip(names, p)}, (x, c, e, w)))
    annealed = vmap(lambda p, x, c, e, w, b: functional_call(base, {f"m.{k}": v for k, v in zip(names, p)}, (x, c, e, w, b)))
    batches_per_epoch = torch.as_tensor(np.ceil(sizes[order] / bs), dtype=torch.float32)  # (M,) in slot order
    adam_m = [torch.zeros_like(p) for p in params.values()]
    adam_v = [torch.zeros_like(p) for p in params.values()]
    history = torch.zeros(M, T, 3)  # (M, T, 3) per-step loss terms
    active_until = steps[order]  # non-increasing
    slots = torch.arange(M)[:, None]  # (M, 1)

    bar = None
    if progress_enabled(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=T, desc=f"fitting {M} CVAE{'s' if M > 1 else ''}", unit="step")
    leaves = list(params.values())
    for t in range(T):
        k = int((active_until > t).sum())  # fits still training: slots [0, k)
        rows = idx[:k, t]  # (k, bs)
        x = X[slots[:k], rows]  # (k, bs, F)
        c = C[slots[:k], rows]  # (k, bs, 2)
        if tc.kl_anneal_epochs > 0:  # each fit's epoch is t // its batches per epoch
            epoch = torch.floor(t / batches_per_epoch[:k])  # (k,)
            beta = torch.clamp((epoch + 1) / tc.kl_anneal_epochs, max=1.0)  # (k,)
            terms = annealed([p[:k] for p in leaves], x, c, eps[:k, t], wts[:k, t], beta)  # (k, 3)
        else:
            terms = batched([p[:k] for p in leaves], x, c, eps[:k, t], wts[:k, t])  # (k, 3)
        grads = torch.autograd.grad(terms[:, 0].sum(), leaves, allow_unused=True, materialize_grads=True)
        with torch.no_grad():
            history[:k, t] = terms
            lr_t = tc.lr * math.sqrt(1 - tc.beta2 ** (t + 1)) / (1 - tc.beta1 ** (t + 1))  # Keras Adam
            for p, g, m1, m2 in zip(leaves, grads, adam_m, adam_v):
                g = g[:k]
                m1[:k].mul_(tc.beta1).add_(g, alpha=1 - tc.beta1)
                m2[:k].mul_(tc.beta2).addcmul_(g, g, value=1 - tc.beta2)
                p[:k].addcdiv_(m1[:k], m2[:k].sqrt().add_(tc.eps), value=-lr_t)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    fitted: list[FittedCVAE | None] = [None] * M
    for slot, m in enumerate(order):
        model = CVAE(cfg)
        model.load_state_dict({k: v[slot].detach().clone() for k, v in params.items()})
        model.eval()
        per_epoch = history[slot, : steps[m]].view(E, -1, 3).mean(dim=1).numpy()  # (E, 3)
        hist = {name: per_epoch[:, i].astype(float).tolist() for i, name in enumerate(["loss", "recon", "kl"])}
        prov = {**jobs[m].provenance, "seed": jobs[m].seed, "n_train": int(sizes[m])}  # the fit's own seed always wins
        fitted[m] = FittedCVAE(model, f_scalers[m], c_scalers[m], tc, hist, prov)
    return fitted  # type: ignore[return-value]


def fit_generator(
    features: np.ndarray,
    conditions: np.ndarray,
    *,
    seed: int = 0,
    extra_conditions: np.ndarray | None = None,
    model_config: CVAEConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: bool | None = None,
    provenance: dict[str, Any] | None = None,
) -> FittedCVAE:
    """Fit one CVAE on ``features`` (n, 21, volts) given ``conditions`` (n, 2: SOC fraction, SOH)."""
    job = FitJob(np.asarray(features, dtype=float), np.asarray(conditions, dtype=float), seed,
                 None if extra_conditions is None else np.asarray(extra_conditions, dtype=float), provenance or {})
    return fit_generators([job], model_config, train_config, progress)[0]
