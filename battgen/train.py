"""Fitting the CVAE: scaling, mini-batch Adam, several fits trained at once, save and load.

The paper's recipe (and the authors' Keras defaults): features MinMax-scaled on the training
rows; conditions ``[SOC, SOH]`` MinMax-scaled on the training conditions together with the
conditions that will be generated (the authors fit that scaler on train and test conditions);
Adam with learning rate 1e-3 (Keras: beta 0.9 / 0.999, epsilon 1e-7); 50 epochs of shuffled
mini-batches of 32.

The model has 4,315 parameters, so one optimiser step costs far more in framework overhead than
in arithmetic. :func:`fit_generators` therefore trains many independent fits as one stack
(:class:`battgen.fused.Stack`: the network's forward and backward pass written out as batched
operations over the fits): every fit keeps its own data, initialisation, shuffling, noise and
optimiser state, and a fit that has taken all its steps stops updating (fits are ordered by
length, so the active ones are always a prefix of the stack). The stack is split over the CPU
cores the process may use, one thread each (``TrainConfig.threads``).

Training and generation run in NumPy and the compiled kernels of :mod:`battgen.kernels`: neither
imports torch (a fitted generator's :attr:`FittedCVAE.model`, the torch module the book looks
inside, is built on first use).
"""

from __future__ import annotations

import json
import math
import os
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from battgen import weights as weights_module
from battgen.config import CVAEConfig, TrainConfig, paused_collector, usable_cores
from battgen.io import atomic_path, progress_bar, progress_enabled, write_npz

if TYPE_CHECKING:
    import torch

    from battgen.model import CVAE

__all__ = ["TrainConfig", "MinMaxScaler", "FitJob", "FittedCVAE", "feature_scaler_for", "fit_generator", "fit_generators",
           "worker_threads", "warm_up"]

FORMAT_VERSION = 2  # 2: the weights in a NumPy archive (1 was a torch file)
_CHUNK = 128
"""Steps whose loss values :func:`battgen.model.loss_terms` computes in one call."""
_STACK = 8
"""Fits trained as one stack at most (a stack holds two (fits, 32, 64, 64) attention maps)."""


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
    """A trained generator: its weights plus everything needed to use it in physical units.

    ``weights`` are float32 arrays under :class:`battgen.model.CVAE`'s parameter names
    (:mod:`battgen.weights`); :meth:`encode` and :meth:`decode` run on them in NumPy. :attr:`model`
    is the same network as a torch module, built on first use, for the book's views inside it
    (:meth:`hidden`, :meth:`attention`).
    """

    weights: dict[str, np.ndarray]
    model_config: CVAEConfig
    feature_scaler: MinMaxScaler
    condition_scaler: MinMaxScaler
    train_config: TrainConfig
    history: dict[str, list[float]]  # per-epoch mean of "loss", "recon", "kl"
    provenance: dict[str, Any]

    config = property(lambda self: self.model_config, doc="The network's :class:`CVAEConfig`.")

    @cached_property
    def model(self) -> CVAE:
        """The generator as a :class:`battgen.model.CVAE` (needs torch: ``pip install "battgen[book]"``), in eval mode."""
        import torch

        from battgen.model import CVAE

        model = CVAE(self.model_config)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.weights.items()})
        return model.eval()

    def scaled_features(self, features: np.ndarray) -> torch.Tensor:
        """Features in volts as the network sees them (scaled), (n, 21) float32."""
        import torch

        return torch.as_tensor(self.feature_scaler.transform(np.atleast_2d(features)), dtype=torch.float32)

    def scaled_conditions(self, conditions: np.ndarray) -> torch.Tensor:
        """``[SOC fraction, SOH]`` as the network sees them (scaled), (n, 2) float32."""
        import torch

        return torch.as_tensor(self.condition_scaler.transform(np.atleast_2d(conditions)), dtype=torch.float32)

    def hidden(self, features: np.ndarray, conditions: np.ndarray) -> dict[str, torch.Tensor]:
        """:meth:`battgen.model.CVAE.hidden` for rows in physical units."""
        import torch

        with torch.no_grad():
            return self.model.hidden(self.scaled_features(features), self.scaled_conditions(conditions))

    def encode(self, features: np.ndarray, conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and log-variance of the latent code for rows in physical units, (n, L) each."""
        mu, logvar = weights_module.encode(self.weights, self.model_config, self.feature_scaler.transform(np.atleast_2d(features)),
                                           self.condition_scaler.transform(np.atleast_2d(conditions)))
        return mu.astype(float), logvar.astype(float)

    def decode(self, z: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Features in volts decoded from latent codes ``z`` at ``conditions`` ([SOC, SOH])."""
        out = weights_module.decode(self.weights, self.model_config, z, self.condition_scaler.transform(np.atleast_2d(conditions)))
        return self.feature_scaler.inverse_transform(out.astype(float))

    def attention(self, features: np.ndarray, conditions: np.ndarray) -> dict[str, np.ndarray]:
        """Encoder and decoder attention maps, (n, 64, 64) each, for rows in physical units."""
        import torch

        with torch.no_grad():
            x = self.scaled_features(features)
            mu, _, enc = self.model.encode(x, self.scaled_conditions(conditions), return_attention=True)
            _, dec = self.model.decode(mu, self.scaled_conditions(conditions), return_attention=True)
        return {"encoder": enc.numpy(), "decoder": dec.numpy()}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save as ``path`` (the weights: a NumPy ``.npz`` archive) plus ``path.json`` (config, scalers, provenance)."""
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
        write_npz({name: self.weights[name] for name in weights_module.shapes(self.config)}, path)
        with atomic_path(_meta_path(path)) as tmp:
            tmp.write_text(json.dumps(meta, indent=2, default=_jsonable))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FittedCVAE":
        """Load what :meth:`save` wrote; the weights are read with ``allow_pickle=False`` (no pickled object runs)."""
        path = Path(path)
        meta_file = _meta_path(path)
        if not path.is_file() or not meta_file.is_file():
            raise FileNotFoundError(f"{path}: a saved generator needs both {path.name} and {meta_file.name}")
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_file}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
        names = weights_module.shapes(CVAEConfig(**meta["model_config"]))
        try:
            with np.load(path, allow_pickle=False) as archive:
                state = {name: archive[name] for name in names}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: not the weights of a battgen generator ({e})") from None
        return cls.from_state(meta, state)

    @classmethod
    def from_state(cls, meta: dict[str, Any], state: dict[str, np.ndarray]) -> "FittedCVAE":
        """A fitted generator from its weights ``state`` (arrays under :class:`battgen.model.CVAE`'s names) and the
        metadata :meth:`save` writes (``model_config``, ``train_config``, ``feature_scaler``, ``condition_scaler``,
        ``history``, ``provenance``)."""
        cfg = CVAEConfig(**meta["model_config"])
        return cls(weights_module.check(state, cfg), cfg, MinMaxScaler.from_dict(meta["feature_scaler"]),
                   MinMaxScaler.from_dict(meta["condition_scaler"]), TrainConfig(**meta["train_config"]), meta["history"],
                   meta["provenance"])


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


# ---------------------------------------------------------------------- training


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


def worker_threads(threads: int | None, n_fits: int, fits_per_thread: int = 4) -> int:
    """How many threads train a stack of ``n_fits``: ``threads`` if given, else one per CPU core this
    process may run on, and never fewer than ``fits_per_thread`` fits per thread.

    Each thread trains its share of the fits as its own stack: independent threads share a busy
    machine fairly, where a pool of threads that meet at every operation waits for its slowest
    (with one other busy process, torch's two pool threads on two cores ran several times slower
    than one).
    """
    cores = threads or usable_cores()
    return max(1, min(int(cores), n_fits // fits_per_thread))


def _shares(steps: np.ndarray, n: int) -> list[list[int]]:
    """Fits split into ``n`` groups of about equal work (longest first to the least loaded), each longest first."""
    groups: list[list[int]] = [[] for _ in range(n)]
    load = np.zeros(n)
    for m in np.argsort(-steps, kind="stable"):
        g = int(np.argmin(load))
        groups[g].append(int(m))
        load[g] += steps[m]
    return [g for g in groups if g]


def fit_generators(
    jobs: Sequence[FitJob],
    model_config: CVAEConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: bool | None = None,
) -> list[FittedCVAE]:
    """Fit one CVAE per job, all at once. Same jobs and seeds give the same generators.

    Each fit ``m`` draws its initial weights from ``numpy.random.default_rng((seed_m, 1))``
    (:func:`battgen.weights.initial`), shuffles with ``numpy.random.default_rng(seed_m)`` and draws
    its reparameterisation noise from ``numpy.random.default_rng((seed_m, 2))``: a fit does not
    depend on which other fits share the stack, nor on how many threads train it. NumPy and the
    compiled kernels only: training does not import torch.
    """
    cfg = model_config or CVAEConfig()
    tc = train_config or TrainConfig()
    if not jobs:
        return []
    for i, job in enumerate(jobs):
        _validate_job(i, job, cfg)
    bs, E = tc.batch_size, tc.epochs
    f_scalers = [feature_scaler_for(j) for j in jobs]
    c_scalers = [MinMaxScaler.fit(np.vstack([j.conditions] + ([j.extra_conditions] if j.extra_conditions is not None else [])))
                 for j in jobs]
    sizes = np.array([len(j.features) for j in jobs])
    steps = E * np.ceil(sizes / bs).astype(int)  # optimiser steps per fit
    fits = [_FitData(job, f_scalers[m], c_scalers[m], weights_module.initial(cfg, job.seed), bs, E, cfg.latent_dim)
            for m, job in enumerate(jobs)]

    bar = None
    if progress_enabled(progress):
        bar = progress_bar(total=int(steps.sum()), progress=True, desc=f"fitting {len(jobs)} CVAE{'s' if len(jobs) > 1 else ''}",
                           unit="step")
    shares = _shares(steps, worker_threads(tc.threads, len(jobs)))

    def work(share: list[int]) -> list[tuple[int, dict, np.ndarray]]:  # one thread: its fits, _STACK at a time
        out = []
        for first in range(0, len(share), _STACK):
            group = share[first:first + _STACK]
            states, histories = _train_stack([fits[m] for m in group], cfg, tc, bar)
            out += list(zip(group, states, histories))
        return out

    with paused_collector():
        if len(shares) == 1:
            results = work(shares[0])
        else:
            with ThreadPoolExecutor(len(shares)) as pool:
                results = [r for share in pool.map(work, shares) for r in share]
    if bar is not None:
        bar.close()

    fitted: list[FittedCVAE | None] = [None] * len(jobs)
    for m, state, per_epoch in results:
        hist = {name: per_epoch[:, i].astype(float).tolist() for i, name in enumerate(["loss", "recon", "kl"])}
        prov = {**jobs[m].provenance, "seed": jobs[m].seed, "n_train": int(sizes[m])}  # the fit's own seed always wins
        fitted[m] = FittedCVAE(state, cfg, f_scalers[m], c_scalers[m], tc, hist, prov)
    return fitted  # type: ignore[return-value]


NOISE_STREAM = 2  # a fit with seed s draws its reparameterisation noise from numpy.random.default_rng((s, NOISE_STREAM))


class _FitData:
    """One fit's scaled rows (with a column of ones), batch order, padding weights, noise and initial weights."""

    def __init__(self, job: FitJob, f_scaler: MinMaxScaler, c_scaler: MinMaxScaler, initial: dict[str, np.ndarray], bs: int,
                 epochs: int, latent_dim: int):
        n = len(job.features)
        self.initial, self.n, self.batches = initial, n, math.ceil(n / bs)
        self.steps = epochs * self.batches
        self.job, self.f_scaler, self.c_scaler, self.bs, self.epochs, self.latent_dim = job, f_scaler, c_scaler, bs, epochs, latent_dim

    def arrays(self) -> tuple[np.ndarray, ...]:
        """``(X (n, F+1), C (n, 2+1), rows (steps, bs), weights (steps, bs), eps (steps, bs, L))``: scaled rows
        with a column of ones, each step's batch (shuffled per epoch, padded), 0 for padding, noise."""
        job, n, bs, epochs = self.job, self.n, self.bs, self.epochs
        ones = np.ones((n, 1))
        X = np.hstack([self.f_scaler.transform(job.features), ones]).astype(np.float32)
        C = np.hstack([self.c_scaler.transform(job.conditions), ones]).astype(np.float32)
        rng = np.random.default_rng(job.seed)
        perms = np.zeros((epochs, self.batches * bs), dtype=np.int64)  # each epoch's shuffled rows, padded to whole batches
        perms[:, :n] = np.stack([rng.permutation(n) for _ in range(epochs)])
        weights = np.tile(np.arange(self.batches * bs) < n, epochs).reshape(self.steps, bs)
        eps = np.random.default_rng((job.seed, NOISE_STREAM)).standard_normal((self.steps, bs, self.latent_dim), dtype=np.float32)
        return X, C, perms.reshape(self.steps, bs), weights, eps


def _train_stack(fits: Sequence[_FitData], cfg: CVAEConfig, tc: TrainConfig, bar) -> tuple[list, list[np.ndarray]]:
    """Train ``fits`` (longest first) as one :class:`battgen.fused.Stack` in this thread.

    Returns each fit's weights (CVAE names) and its per-epoch mean loss terms (epochs, 3).
    """
    from battgen.fused import Stack

    bs, M, L = tc.batch_size, len(fits), cfg.latent_dim
    T = fits[0].steps
    Xs, Cs = [], []
    rows = np.zeros((T, M * bs), dtype=np.int64)  # (T, M*bs) row of each batch slot in X, C
    eps = np.zeros((T, M, bs, L), dtype=np.float32)  # (T, M, bs, L) reparameterisation noise
    wts = np.zeros((T, M, bs), dtype=np.float32)  # (T, M, bs) 1 for a real slot, 0 for padding
    beta = np.ones((T, M), dtype=np.float32)  # (T, M) KL weight of each fit's step (annealing)
    offset = 0
    for slot, f in enumerate(fits):
        X_f, C_f, rows_f, weights_f, eps_f = f.arrays()
        Xs.append(X_f)
        Cs.append(C_f)
        rows[: f.steps, slot * bs:(slot + 1) * bs] = rows_f + offset
        eps[: f.steps, slot] = eps_f
        wts[: f.steps, slot] = weights_f
        offset += f.n
        if tc.kl_anneal_epochs > 0:  # the fit's epoch is t // its batches per epoch
            epoch = np.arange(f.steps) // f.batches
            beta[: f.steps, slot] = np.minimum((epoch + 1) / tc.kl_anneal_epochs, 1.0)
    X = np.ascontiguousarray(np.concatenate(Xs))  # (sum n, F+1) every fit's rows, in C order (one compiled gather)
    C = np.ascontiguousarray(np.concatenate(Cs))  # (sum n, 2+1)
    annealed = tc.kl_anneal_epochs > 0
    stack = Stack(cfg, [f.initial for f in fits], bs, tc.free_bits)
    stack.keep(_CHUNK)
    history = np.zeros((T, 3, M), dtype=np.float32)  # (T, 3, M) per-step loss terms
    active = (np.array([f.steps for f in fits])[None, :] > np.arange(T)[:, None]).sum(axis=1)  # (T,) fits still training
    for t in range(T):
        k, slot = int(active[t]), t % _CHUNK
        stack.step(k, rows[t, : k * bs], X, C, eps[t, :k], wts[t, :k], beta[t, :k] if annealed else None, slot)
        lr_t = tc.lr * math.sqrt(1 - tc.beta2 ** (t + 1)) / (1 - tc.beta1 ** (t + 1))  # Keras Adam
        stack.adam(k, lr_t, tc.beta1, tc.beta2, tc.eps)
        if slot == _CHUNK - 1 or t == T - 1:  # the loss of the last steps' batches, in one call
            first = t - slot
            terms = stack.kept_terms(slot + 1, rows[first:t + 1], X, wts[first:t + 1], beta[first:t + 1] if annealed else None)
            history[first:t + 1] = terms.transpose(1, 0, 2)  # (steps, 3, M)
        if bar is not None:
            bar.update(k)
    per_epoch = [history[: f.steps, :, slot].reshape(tc.epochs, f.batches, 3).mean(axis=1) for slot, f in enumerate(fits)]
    return [stack.state_dict(slot) for slot in range(M)], per_epoch


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


def warm_up() -> float:
    """Compile the trainer's kernels into numba's disk cache with a tiny stack of two fits on synthetic pulses
    (``make setup`` runs it, so a first ``battgen train --generator cvae`` skips the 10-20 s); seconds taken."""
    t0, rng = time.perf_counter(), np.random.default_rng(0)
    cond = [np.column_stack([rng.uniform(0.05, 0.5, n), rng.uniform(0.7, 1.0, n)]) for n in (96, 40)]  # (n, 2)
    jobs = [FitJob(3.6 + 0.4 * c[:, :1] + 0.2 * c[:, 1:] + 0.01 * rng.standard_normal((len(c), 21)), c, seed, None, {})
            for seed, c in enumerate(cond)]  # fits of different lengths: the stack's active prefix shrinks
    fit_generators(jobs, train_config=TrainConfig(epochs=1, threads=1), progress=False)
    return time.perf_counter() - t0
