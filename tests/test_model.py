"""battgen.model: the paper's structure, shapes, parameter count, the attention maths and the one loss function."""

from __future__ import annotations

import pytest
import torch

from battgen.model import CVAE, CVAEConfig, UnitCrossAttention, _SoftmaxRead, count_parameters, loss_grads, loss_terms, set_seed


def test_parameter_count_matches_the_keras_model() -> None:
    assert count_parameters(CVAE()) == 4315
    # 192 (condition) + 1408 (encoder) + 2 x 449 (attention) + 2 x 130 (z) + 192 + 1365 (decoder)
    assert count_parameters(UnitCrossAttention(64, 1)) == 449


def test_forward_shapes_and_attention_rows_sum_to_one() -> None:
    set_seed(0)
    model = CVAE()
    x, c = torch.rand(5, 21), torch.rand(5, 2)
    x_hat, mu, logvar, extras = model(x, c, return_attention=True)  # (5, 21), (5, 2), (5, 2)
    assert x_hat.shape == (5, 21) and mu.shape == (5, 2) and logvar.shape == (5, 2)
    assert ((x_hat > 0) & (x_hat < 1)).all()  # sigmoid output
    for name in ("encoder_attention", "decoder_attention"):
        att = extras[name]
        assert att.shape == (5, 64, 64)
        torch.testing.assert_close(att.sum(-1), torch.ones(5, 64))
    assert model(x, c)[3] == {}


def test_factorised_attention_equals_textbook_attention() -> None:
    torch.manual_seed(1)
    for heads in (1, 2):
        att = UnitCrossAttention(key_dim=8, num_heads=heads)
        for p in att.parameters():
            torch.nn.init.normal_(p, std=0.5)
        q, ctx = torch.rand(4, 6), torch.rand(4, 5) * 2
        y_fast, a_fast = att(q, ctx)
        y_ref, a_ref = att.forward_naive(q, ctx)
        torch.testing.assert_close(y_fast, y_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a_fast, a_ref, atol=1e-6, rtol=1e-5)


def test_softmax_read_gradients_match_autograd() -> None:
    s = torch.randn(3, 2, 5, dtype=torch.double, requires_grad=True)
    ctx = torch.rand(3, 2, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _SoftmaxRead.apply(a, b)[0], (s, ctx))
    s = torch.randn(3, 2, 5, dtype=torch.double) * 20  # large logits: the row maximum keeps exp finite
    assert torch.isfinite(_SoftmaxRead.apply(s, ctx.detach() * 10)[0]).all()


def test_known_value_single_unit_attention() -> None:
    """One query unit, two context units, hand-set weights: the output is a softmax average."""
    att = UnitCrossAttention(key_dim=1, num_heads=1)
    with torch.no_grad():
        for lin in (att.query, att.key, att.value, att.out):
            lin.weight.fill_(1.0)
            lin.bias.fill_(0.0)
    y, a = att(torch.tensor([[1.0]]), torch.tensor([[0.0, 1.0]]))
    w = torch.softmax(torch.tensor([0.0, 1.0]), 0)  # logits q*k = 1*0, 1*1
    torch.testing.assert_close(a[0, 0], w)
    torch.testing.assert_close(y, (w[1] * 1.0).reshape(1, 1))


def test_loss_terms_are_the_papers() -> None:
    model = CVAE()
    x = torch.full((2, 21), 0.5)
    x_hat = torch.full((2, 21), 0.3)
    mu, logvar = torch.zeros(2, 2), torch.zeros(2, 2)
    terms = model.loss(x, x_hat, mu, logvar)
    torch.testing.assert_close(terms["recon"], torch.tensor(21 * 0.04))  # 21 * MSE
    torch.testing.assert_close(terms["kl"], torch.tensor(0.0))  # N(0, I) posterior
    torch.testing.assert_close(terms["loss"], torch.tensor(0.5 * 21 * 0.04))
    terms = model.loss(x, x, torch.ones(2, 2), torch.zeros(2, 2))
    torch.testing.assert_close(terms["kl"], torch.tensor(1.0))  # 0.5 * sum(mu^2) over 2 dims


def test_concat_ablation_has_no_attention() -> None:
    model = CVAE(CVAEConfig(conditioning="concat"))
    x_hat, _, _, extras = model(torch.rand(3, 21), torch.rand(3, 2), return_attention=True)
    assert x_hat.shape == (3, 21) and extras["encoder_attention"] is None
    assert not hasattr(model, "enc_attn")


def test_set_seed_makes_initialisation_repeatable() -> None:
    set_seed(3)
    a = CVAE().state_dict()
    set_seed(3)
    b = CVAE().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cvae_loss_is_loss_terms_with_unit_weights(dtype) -> None:
    """CVAE.loss calls loss_terms with w = ones: the same operations in the same order, so equal to the last bit."""
    gen = torch.Generator().manual_seed(0)
    for cfg in (CVAEConfig(), CVAEConfig(w_recon=1.0, w_kl=0.25, latent_dim=3)):
        model = CVAE(cfg)
        x, x_hat = torch.rand(7, 21, generator=gen, dtype=dtype), torch.rand(7, 21, generator=gen, dtype=dtype)
        mu = torch.randn(7, cfg.latent_dim, generator=gen, dtype=dtype)
        logvar = torch.randn(7, cfg.latent_dim, generator=gen, dtype=dtype)
        terms = model.loss(x, x_hat, mu, logvar)
        ref = loss_terms(cfg, x, x_hat, mu, logvar, torch.ones(7, dtype=dtype))
        assert ref.shape == (3,) and ref.dtype == dtype
        assert torch.equal(torch.stack([terms["loss"], terms["recon"], terms["kl"]]), ref)


def test_loss_terms_weights_padding_and_free_bits() -> None:
    gen = torch.Generator().manual_seed(1)
    cfg = CVAEConfig()
    x, x_hat = torch.rand(5, 21, generator=gen), torch.rand(5, 21, generator=gen)
    mu, logvar = torch.randn(5, 2, generator=gen), torch.randn(5, 2, generator=gen)
    full = loss_terms(cfg, x[:3], x_hat[:3], mu[:3], logvar[:3], torch.ones(3))
    padded = loss_terms(cfg, x, x_hat, mu, logvar, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))  # rows 4-5 are padding
    torch.testing.assert_close(padded, full, rtol=1e-6, atol=0)  # zeros join the sums: same value up to rounding
    # free bits: the batch-mean KL of each latent dimension is floored; the reported KL is not
    kl_dims = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).mean(0)
    floor = float(kl_dims.max()) + 1.0
    fb = loss_terms(cfg, x, x_hat, mu, logvar, torch.ones(5), free_bits=floor)
    torch.testing.assert_close(fb[0], cfg.w_recon * fb[1] + cfg.w_kl * 2 * floor)
    torch.testing.assert_close(fb[2], kl_dims.sum())
    half = loss_terms(cfg, x, x_hat, mu, logvar, torch.ones(5), beta=torch.tensor(0.5))
    torch.testing.assert_close(half[0], cfg.w_recon * half[1] + 0.5 * cfg.w_kl * half[2])


def test_attention_scalars_and_logits_are_the_layers() -> None:
    set_seed(2)
    att = UnitCrossAttention(key_dim=8, num_heads=2)
    for p in att.parameters():
        torch.nn.init.normal_(p, std=0.5)
    q, ctx = torch.rand(3, 6), torch.rand(3, 5)
    with torch.no_grad():
        a, c, alpha, beta = att.scalars()
        logits = att.logits(q, ctx)
    assert a.shape == c.shape == alpha.shape == (2,) and beta.shape == (1,)
    assert logits.shape == (3, 2, 6, 5)
    # along the context axis the logits are C_j (a h_i + c) up to a per-row constant
    factored = ctx[:, None, None, :] * (a[None, :, None, None] * q[:, None, :, None] + c[None, :, None, None])
    centred = (logits - logits.mean(-1, keepdim=True)) - (factored - factored.mean(-1, keepdim=True))
    assert float(centred.abs().max()) < 1e-5


def test_hidden_returns_what_attention_reads() -> None:
    set_seed(4)
    model = CVAE()
    x, c = torch.rand(4, 21), torch.rand(4, 2)
    with torch.no_grad():
        hid = model.hidden(x, c)
        mu, _, _ = model.encode(x, c)
        torch.testing.assert_close(hid["C"], model.embed_condition(c), rtol=0, atol=0)
    assert set(hid) == {"C", "h_enc", "mu", "h_dec"}
    assert hid["h_enc"].shape == hid["h_dec"].shape == (4, 64) and torch.equal(hid["mu"], mu)


def test_loss_terms_takes_many_batches_at_once() -> None:
    """Leading dimensions are independent batches: the same numbers as one call per batch."""
    gen = torch.Generator().manual_seed(3)
    cfg = CVAEConfig()
    x, x_hat = torch.rand(4, 6, 21, generator=gen), torch.rand(4, 6, 21, generator=gen)
    mu, logvar = torch.randn(4, 6, 2, generator=gen), torch.randn(4, 6, 2, generator=gen)
    w = torch.ones(4, 6)
    w[2, 4:] = 0.0
    beta = torch.tensor([0.1, 0.5, 1.0, 0.3])
    for kwargs in ({}, {"free_bits": 0.3}, {"beta": beta}):
        batched = loss_terms(cfg, x, x_hat, mu, logvar, w, **kwargs)
        assert batched.shape == (3, 4)
        for i in range(4):
            one = {k: (v[i] if k == "beta" else v) for k, v in kwargs.items()}
            torch.testing.assert_close(batched[:, i], loss_terms(cfg, x[i], x_hat[i], mu[i], logvar[i], w[i], **one),
                                       rtol=1e-6, atol=0)


@pytest.mark.parametrize("free_bits, beta", [(0.0, None), (0.0, 0.4), (0.25, None), (0.25, 0.4)])
def test_loss_grads_is_the_gradient_of_loss_terms(free_bits, beta) -> None:
    """The closed-form gradient the trainer steps along equals autograd on loss_terms, every branch, padding included."""
    gen = torch.Generator().manual_seed(4)
    cfg = CVAEConfig(w_recon=0.7, w_kl=0.3)
    x, x_hat = torch.rand(3, 5, 21, generator=gen, dtype=torch.float64), torch.rand(3, 5, 21, generator=gen, dtype=torch.float64)
    mu = torch.randn(3, 5, 2, generator=gen, dtype=torch.float64)
    logvar = torch.randn(3, 5, 2, generator=gen, dtype=torch.float64)
    w = torch.ones(3, 5, dtype=torch.float64)
    w[1, 3:] = 0.0
    b = None if beta is None else torch.tensor([beta, 1.0, 0.5], dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x_hat, mu, logvar)]
    auto = torch.autograd.grad(loss_terms(cfg, x, *leaves, w, free_bits, b)[0].sum(), leaves, allow_unused=True,
                               materialize_grads=True)
    for a, g in zip(auto, loss_grads(cfg, x, x_hat, mu, logvar, w, free_bits, b)):
        torch.testing.assert_close(g, a, rtol=1e-12, atol=1e-14)
