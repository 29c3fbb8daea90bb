"""The reference for one fit's speed: a plain single-thread PyTorch training loop.

What a competent user would write to fit a conditional VAE of the paper's size on the same rows:
``nn.Linear`` layers (the condition embedding concatenated to the hidden units instead of the
paper's cross-attention, so 5,017 parameters against the paper model's 4,315), autograd,
``torch.optim.Adam`` (Keras' learning rate and epsilon), shuffled mini-batches of 32, 50 epochs,
the paper's loss (0.5 * 21 * MSE + 0.5 * KL). No battgen code runs in the loop: battgen only
supplies the rows (the same scaled features and conditions battgen's fit sees).

Usage: python benchmarks/reference_loop.py [--fits N] [--rows FILE.npz]
(prints the wall time of N fits, default 1, on LMO 10 Ah case 0; with ``--rows``, the rows ``x`` and
``c`` are read from a NumPy archive instead, so that the process imports nothing of battgen:
``bench_speed.py`` times it that way as a fresh process, start to end, beside the grid)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn


class PlainCVAE(nn.Module):
    def __init__(self, features: int = 21, conditions: int = 2, hidden: int = 64, latent: int = 2):
        super().__init__()
        self.embed = nn.Linear(conditions, hidden)
        self.enc = nn.Linear(features, hidden)
        self.mu = nn.Linear(2 * hidden, latent)
        self.logvar = nn.Linear(2 * hidden, latent)
        self.dec = nn.Linear(latent, hidden)
        self.out = nn.Linear(2 * hidden, features)

    def forward(self, x: torch.Tensor, c: torch.Tensor):
        e = torch.relu(self.embed(c))  # (B, 64)
        h = torch.cat([torch.relu(self.enc(x)), e], dim=1)  # (B, 128)
        mu, logvar = self.mu(h), self.logvar(h)  # (B, 2) each
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, 2)
        x_hat = torch.sigmoid(self.out(torch.cat([torch.relu(self.dec(z)), e], dim=1)))  # (B, 21)
        return x_hat, mu, logvar


def plain_fit(x: np.ndarray, c: np.ndarray, epochs: int = 50, batch_size: int = 32, seed: int = 0) -> PlainCVAE:
    """Fit :class:`PlainCVAE` on scaled features ``x`` (n, 21) and conditions ``c`` (n, 2), one thread."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = PlainCVAE(x.shape[1], c.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    X, C = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(c, dtype=torch.float32)
    for _ in range(epochs):
        perm = torch.randperm(len(X))
        for start in range(0, len(X), batch_size):
            rows = perm[start:start + batch_size]
            xb, cb = X[rows], C[rows]
            x_hat, mu, logvar = model(xb, cb)
            recon = xb.shape[1] * ((xb - x_hat) ** 2).mean(dim=1)
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)
            loss = (0.5 * recon + 0.5 * kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def paper_rows(data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The scaled rows of battgen's one-fit benchmark: LMO 10 Ah, case 0, seed 0 (570 rows)."""
    from battgen.data import load_pulsebat
    from battgen.evaluation.generators import FITS, GeneratorSettings
    from battgen.evaluation.split import paper_split
    from battgen.train import MinMaxScaler, feature_scaler_for

    job = FITS["paper"].job(paper_split(load_pulsebat("LMO10", data_dir=data_dir), case=0, seed=0),
                            GeneratorSettings().feature_bounds)
    conditions = np.vstack([job.conditions, job.extra_conditions])
    return feature_scaler_for(job).transform(job.features), MinMaxScaler.fit(conditions).transform(job.conditions)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="a plain single-thread PyTorch CVAE loop on battgen's one-fit rows")
    ap.add_argument("--fits", type=int, default=1, help="fits one after another (seeds 0, 1, ...)")
    ap.add_argument("--rows", help="a NumPy archive with the scaled rows x (n, 21) and c (n, 2)")
    args = ap.parse_args(argv)
    if args.rows:
        with np.load(args.rows, allow_pickle=False) as rows:
            x, c = rows["x"], rows["c"]
    else:
        x, c = paper_rows()
    t0 = time.perf_counter()
    for seed in range(args.fits):
        model = plain_fit(x, c, seed=seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"plain PyTorch loop ({n_params} parameters, {len(x)} rows, 50 epochs, batch 32, 1 thread): "
          f"{args.fits} fit(s) in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
