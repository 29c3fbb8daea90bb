"""battgen.train and battgen.fused: scaling, repeatable stacked fits (alone = in a stack = over threads), the hand-written
step against autograd, the loss it records and steps along, save/load without pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from battgen.train import FitJob, FittedCVAE, MinMaxScaler, TrainConfig, fit_generator, fit_generators

FAST = TrainConfig(epochs=3, batch_size=16)


def _toy(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    soc = rng.choice([0.05, 0.1, 0.2], n)
    soh = rng.uniform(0.7, 1.0, n)
    x = 3.3 + 0.5 * soc[:, None] + 0.1 * soh[:, None] + 0.01 * rng.standard_normal((n, 21))
    return x, np.column_stack([soc, soh])


def test_minmax_scaler_round_trips_and_handles_constant_columns() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    s = MinMaxScaler.fit(x)
    np.testing.assert_allclose(s.transform(x), [[0, 0], [1, 0]])
    np.testing.assert_allclose(s.inverse_transform(s.transform(x)), x)
    assert MinMaxScaler.from_dict(json.loads(json.dumps(s.to_dict()))).to_dict() == s.to_dict()


def test_same_seed_same_generator_and_history() -> None:
    x, c = _toy()
    a = fit_generator(x, c, seed=7, train_config=FAST, progress=False)
    b = fit_generator(x, c, seed=7, train_config=FAST, progress=False)
    assert a.history == b.history
    assert set(a.weights) == set(b.weights) and all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    d = fit_generator(x, c, seed=8, train_config=FAST, progress=False)
    assert d.history != a.history


def test_a_fit_does_not_depend_on_its_stack_neighbours() -> None:
    """Alone, in a stack, or in a stack split over threads: the same weights and history, to the last bit."""
    jobs = [FitJob(*_toy(20 + 7 * i, seed=i), seed=i) for i in range(9)]
    alone = [fit_generators([job], train_config=FAST, progress=False)[0] for job in jobs]
    one_thread = fit_generators(jobs, train_config=TrainConfig(epochs=3, batch_size=16, threads=1), progress=False)
    two_threads = fit_generators(jobs, train_config=TrainConfig(epochs=3, batch_size=16, threads=2), progress=False)
    for a, b, c in zip(alone, one_thread, two_threads):
        assert a.history == b.history == c.history and len(a.history["loss"]) == FAST.epochs
        for k, v in a.weights.items():
            assert np.array_equal(b.weights[k], v) and np.array_equal(c.weights[k], v)


def test_worker_threads_follow_the_setting_and_the_stack() -> None:
    from battgen.train import worker_threads

    assert worker_threads(3, 100) == 3 and worker_threads(2, 5) == 1  # at least 4 fits per thread
    assert worker_threads(None, 1) == 1
    assert 1 <= worker_threads(None, 1000) <= len(os.sched_getaffinity(0))


def test_the_collector_stays_paused_until_the_last_of_overlapping_trainers_ends() -> None:
    import gc

    from battgen.config import paused_collector

    was_on = gc.isenabled()
    try:
        for before in (True, False):
            (gc.enable if before else gc.disable)()
            first, second = paused_collector(), paused_collector()
            first.__enter__()
            second.__enter__()  # a second trainer, in another thread, starts before the first ends
            assert not gc.isenabled()
            first.__exit__(None, None, None)
            assert not gc.isenabled(), "the second trainer still runs"
            second.__exit__(None, None, None)
            assert gc.isenabled() == before
        gc.enable()
        with pytest.raises(RuntimeError), paused_collector():
            raise RuntimeError("a failed fit")
        assert gc.isenabled()
    finally:
        (gc.enable if was_on else gc.disable)()


def test_training_reduces_the_loss() -> None:
    x, c = _toy(64)
    fits = fit_generators([FitJob(x, c, seed) for seed in range(4)], train_config=TrainConfig(epochs=30), progress=False)
    ratios = [fit.history["loss"][-1] / fit.history["loss"][0] for fit in fits]  # one seed's fit can stall for a while
    assert max(ratios) < 0.9 and np.mean(ratios) < 0.7, ratios
    assert all(set(fit.history) == {"loss", "recon", "kl"} for fit in fits)


def test_condition_scaler_sees_extra_conditions() -> None:
    x, c = _toy()
    extra = np.array([[0.5, 0.6]])
    fit = fit_generator(x, c, seed=0, extra_conditions=extra, train_config=FAST, progress=False)
    np.testing.assert_allclose(fit.condition_scaler.data_max[0], 0.5)
    np.testing.assert_allclose(fit.condition_scaler.data_min[1], 0.6)
    np.testing.assert_allclose(fit.feature_scaler.data_max, x.max(0))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    x, c = _toy()
    fit = fit_generator(x, c, seed=0, train_config=FAST, progress=False, provenance={"battery": "toy"})
    path = fit.save(tmp_path / "gen.pt")
    meta = json.loads((tmp_path / "gen.pt.json").read_text())
    assert meta["provenance"]["battery"] == "toy" and meta["model_config"]["latent_dim"] == 2
    again = FittedCVAE.load(path)
    z = np.zeros((3, 2))
    np.testing.assert_array_equal(again.decode(z, c[:3]), fit.decode(z, c[:3]))
    assert again.history == fit.history
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left behind
    assert fit.save(tmp_path / "again.npz").read_bytes() == path.read_bytes()  # the same generator, the same bytes


def test_load_refuses_pickled_objects(tmp_path: Path) -> None:
    x, c = _toy()
    path = fit_generator(x, c, seed=0, train_config=FAST, progress=False).save(tmp_path / "gen.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weights": Evil()}, path)  # a pickle (in torch's zip): never unpickled
    with pytest.raises(ValueError, match="not the weights of a battgen generator"):
        FittedCVAE.load(path)
    path.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not the weights of a battgen generator"):
        FittedCVAE.load(path)


def test_bad_input_is_named() -> None:
    x, c = _toy()
    with pytest.raises(ValueError, match=r"fit job 0: features must have shape \(n, 21\)"):
        fit_generator(x[:, :20], c, train_config=FAST)
    x[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_generator(x, c, train_config=FAST)


def test_public_views_of_a_fit() -> None:
    x, c = _toy()
    fit = fit_generator(x, c, seed=0, train_config=FAST, progress=False)
    X, C = fit.scaled_features(x), fit.scaled_conditions(c)
    assert X.dtype == C.dtype == torch.float32 and X.shape == (40, 21) and C.shape == (40, 2)
    np.testing.assert_array_equal(X.numpy(), fit.feature_scaler.transform(x).astype(np.float32))
    np.testing.assert_array_equal(C.numpy(), fit.condition_scaler.transform(c).astype(np.float32))
    hid = fit.hidden(x, c)
    assert set(hid) == {"C", "h_enc", "mu", "h_dec"}
    assert hid["C"].shape == hid["h_enc"].shape == hid["h_dec"].shape == (40, 64) and hid["mu"].shape == (40, 2)
    np.testing.assert_allclose(hid["mu"].numpy().astype(float), fit.encode(x, c)[0], atol=1e-6)  # torch module = NumPy
    maps = fit.attention(x[:3], c[:3])
    assert maps["encoder"].shape == maps["decoder"].shape == (3, 64, 64)


# --------------------------------------------------------------------------- the step and the loss training runs


def _network_gradients(model, x, c, eps, w, free_bits=0.0, beta=None):
    """Autograd on battgen.model.CVAE: the loss terms and the gradient of the loss for every parameter."""
    from battgen.model import loss_terms

    mu, logvar, _ = model.encode(x, c)
    x_hat = model.decode(mu + torch.exp(0.5 * logvar) * eps, c)
    terms = loss_terms(model.config, x, x_hat, mu, logvar, w, free_bits, beta)
    grads = torch.autograd.grad(terms[0], list(model.parameters()), allow_unused=True, materialize_grads=True)
    return terms.detach(), dict(zip([n for n, _ in model.named_parameters()], grads))


@pytest.mark.parametrize("config, free_bits, beta, edges", [
    ({}, 0.0, None, False),  # the paper's network and loss
    ({"conditioning": "concat", "output": "linear"}, 0.2, 0.5, False),  # the improved generators' network, floor and annealing
    ({"num_heads": 2, "embedding_dim": 8, "intermediate_dim": 6, "latent_dim": 3}, 0.0, None, False),
    ({}, 0.0, None, True),  # rows whose query units or condition units are all 0, or none 0; logits beyond exp's range
    ({"num_heads": 2, "embedding_dim": 8, "intermediate_dim": 6, "latent_dim": 3}, 0.0, None, True),
])
def test_hand_written_step_is_autograd_on_the_model(config, free_bits, beta, edges) -> None:
    """battgen.fused.Stack computes the CVAE's forward pass and the gradient autograd gives, for every fit of a stack."""
    from battgen.fused import Stack
    from battgen.model import CVAE, CVAEConfig

    cfg, M, B = CVAEConfig(**config), 3, 7
    torch.manual_seed(0)
    models = [CVAE(cfg).double() for _ in range(M)]
    for model in models:
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.3)  # no zero biases: every term of the gradient counts
    x = torch.rand(M, B, cfg.feature_dim, dtype=torch.float64)
    c = torch.rand(M, B, cfg.condition_dim, dtype=torch.float64)
    if edges:  # the attention kernels' special rows (battgen.kernels): shared softmax rows, the zero units' column
        with torch.no_grad():
            for model in models:
                for layer in (model.cond_embed, model.enc_hidden, model.dec_hidden):
                    layer.weight.abs_().add_(0.2)
                    layer.bias.fill_(-0.5)
                model.enc_attn.query.weight.mul_(40.0)  # logits of hundreds: weights far below 2^-126 of the largest
        x[:, 0], c[:, 0] = 0.0, 0.0  # row 0: every condition unit and every encoder unit is 0
        x[:, 1], c[:, 1] = 5.0, 5.0  # row 1: none is
    eps = torch.randn(M, B, cfg.latent_dim, dtype=torch.float64)
    w = torch.ones(M, B, dtype=torch.float64)
    w[1, -2:] = 0.0  # padding rows
    betas = None if beta is None else torch.full((M,), beta, dtype=torch.float64)
    ones = torch.ones(M * B, 1, dtype=torch.float64)
    initial = [{k: v.numpy() for k, v in m.state_dict().items()} for m in models]
    stack = Stack(cfg, initial, B, free_bits)
    X, C = torch.cat([x.reshape(M * B, -1), ones], 1).numpy(), torch.cat([c.reshape(M * B, -1), ones], 1).numpy()
    stack.step(M, np.arange(M * B), X, C, eps.numpy(), w, betas)
    if edges:  # the special rows did occur
        wk, enc = stack._work, stack._work.layers[0]
        assert (wk.Cstat[:, 0, 3] == 0).all() and (wk.Cstat[:, 1, 2] == 0).all() and (enc.hn[:, 0] == 0).all()
        assert (enc.buf == 2.0 ** -126).any()  # floored weights
    terms = stack.kept_terms(1, np.arange(M * B)[None], X, w[None], None if betas is None else betas[None])[:, 0]
    grads = Stack(cfg, initial, B)
    grads.params[:] = stack.grads  # read the gradient buffer with the parameters' names
    for m, model in enumerate(models):
        want_terms, want = _network_gradients(model, x[m], c[m], eps[m], w[m], free_bits, None if betas is None else betas[m])
        torch.testing.assert_close(torch.from_numpy(terms[:, m]), want_terms, rtol=1e-12, atol=1e-12)
        got = grads.state_dict(m)
        assert set(got) == set(want)
        for name, g in want.items():
            torch.testing.assert_close(torch.from_numpy(got[name]), g, rtol=1e-10, atol=1e-12, msg=name)


def test_history_is_loss_terms_on_each_batch(monkeypatch) -> None:
    """The trainer records battgen.loss.loss_terms on every step's batch: one step by hand."""
    import battgen.fused as fused
    from battgen.loss import loss_terms
    from battgen.model import CVAE
    from battgen.train import NOISE_STREAM
    from battgen.weights import initial

    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return loss_terms(*args, **kwargs)

    monkeypatch.setattr(fused, "loss_terms", counting)
    x, c = _toy(16, seed=2)
    fit = fit_generators([FitJob(x, c, 5)], train_config=TrainConfig(epochs=1, batch_size=16), progress=False)[0]
    assert calls  # called for the values
    model = CVAE()  # the fit's initialisation, shuffling and noise all derive from its seed
    model.load_state_dict({k: torch.from_numpy(v) for k, v in initial(model.config, 5).items()})
    perm = np.random.default_rng(5).permutation(16)
    eps = torch.from_numpy(np.random.default_rng((5, NOISE_STREAM)).standard_normal((1, 16, 2), dtype=np.float32)[0])
    xb, cb = fit.scaled_features(x)[perm], fit.scaled_conditions(c)[perm]
    with torch.no_grad():
        mu, logvar, _ = model.encode(xb, cb)
        expected = loss_terms(model.config, xb, model.decode(mu + torch.exp(0.5 * logvar) * eps, cb), mu, logvar, torch.ones(16))
    # the hand-written forward pass rounds differently from the module's: equal to float32 precision (the KL, about
    # 2e-4 here, is a difference of terms near 1: float32 leaves it an absolute error of order 1e-7)
    np.testing.assert_allclose([fit.history[k][0] for k in ("loss", "recon", "kl")], expected.numpy(), rtol=1e-5, atol=1e-7)


def test_a_loss_changed_without_its_gradient_stops_training(monkeypatch) -> None:
    """loss_grads is checked against finite differences of loss_terms at the first step: they cannot drift apart."""
    import battgen.fused as fused
    import battgen.loss as loss
    from battgen.loss import loss_terms

    def heavier_kl(cfg, x, x_hat, mu, logvar, w, free_bits=0.0, beta=None):
        return loss_terms(cfg, x, x_hat, mu, logvar, w, free_bits, np.asarray(2.0) if beta is None else 2 * beta)

    monkeypatch.setattr(fused, "loss_terms", heavier_kl)
    monkeypatch.setattr(loss, "loss_terms", heavier_kl)
    x, c = _toy(40)
    with pytest.raises(RuntimeError, match="loss_grads is not the gradient of battgen.loss.loss_terms"):
        fit_generators([FitJob(x, c, 0)], train_config=FAST, progress=False)


# --------------------------------------------------------------------------- the improved generators' options


def test_improved_training_options(tmp_path: Path) -> None:
    from battgen.model import CVAEConfig

    rng = np.random.default_rng(0)
    cond = np.column_stack([rng.choice([0.05, 0.25, 0.5], 96), rng.uniform(0.7, 1.0, 96)])
    feats = 3.2 + 0.8 * cond[:, :1] + 0.1 * cond[:, 1:] + 0.01 * rng.standard_normal((96, 21))
    job = FitJob(feats, cond, seed=0, feature_bounds=(1.5, 5.0))
    cfg = CVAEConfig(conditioning="concat", output="linear")
    plain = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4))[0]
    fixed, floored, annealed = fit_generators(
        [job, FitJob(feats, cond, seed=0), FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4), progress=False)
    np.testing.assert_array_equal(fixed.feature_scaler.data_min, np.full(21, 1.5))
    np.testing.assert_array_equal(fixed.feature_scaler.data_max, np.full(21, 5.0))
    # a fit does not depend on its neighbours in the stack
    assert floored.history == plain.history
    fb = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4, free_bits=0.5), progress=False)[0]
    an = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4, kl_anneal_epochs=3), progress=False)[0]
    assert fb.history != plain.history and an.history != plain.history
    assert all(np.isfinite(v).all() for v in fb.history.values())
    path = fb.save(tmp_path / "g.pt")
    back = FittedCVAE.load(path)
    assert back.train_config.free_bits == 0.5
    with pytest.raises(ValueError, match="feature_bounds"):
        fit_generators([FitJob(feats, cond, seed=0, feature_bounds=(5.0, 1.5))], cfg, TrainConfig(epochs=1))


def test_kernels_compile_where_no_cache_folder_is_writable(monkeypatch) -> None:
    """numba caches the kernels' machine code on disk; with no writable folder for it, they compile in the process
    instead of failing at import."""
    from numba import njit
    from numba.core import caching

    from battgen import kernels

    def add_one(x):
        return x + 1

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # no folder where numba could write
    with pytest.raises(RuntimeError, match="no locator available"):  # what numba does on its own
        njit(cache=True)(add_one)
    compiled = kernels._jit(add_one)
    assert compiled(1) == 2 and type(compiled._cache).__name__ == "NullCache"
