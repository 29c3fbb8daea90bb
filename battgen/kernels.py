"""Compiled kernels of the stacked trainer (:mod:`battgen.fused`): the unit cross-attention, the
element-wise steps between the layers' matrix products, and Adam.

The attention of :class:`battgen.model.UnitCrossAttention` reads, for every query unit ``i`` of a
row, ``g_i = sum_j softmax_j(s_i C_j) C_j`` with the logit slope ``s_i = a h_i + c``. Two exact
shortcuts make its cost follow the units that are not zero, which ReLU leaves at about half
(in the paper's fit about 33 query rows and 31 condition units of 64 each):

- a query unit with ``h_i = 0`` has the slope ``s_i = c``: every such unit of a row has the same
  softmax row, computed once (row 0 of the row's block below);
- a condition unit with ``C_j = 0`` adds ``exp(0 - max)`` to the normaliser and nothing to the
  moments: the zero units of a row count as one column, weighted by how many there are.

For each fit, row of the batch and head, :func:`attend_args` writes the block's exponents
(rows: the shared row, then the non-zero query units; columns: the non-zero condition units, then
the zero ones) row by row into one flat buffer, padded so that every inner loop runs along
contiguous memory in whole vectors; one NumPy ``exp2`` over the buffer gives the unnormalised
weights; :func:`attend_read` sums each row's moments and :func:`attend_back` runs the backward
pass (the gradients of :class:`battgen.model._SoftmaxRead`) on the same weights, four rows at a
time. Every fit's numbers go through the same loops in the same order whatever else the stack
holds, so a fit trained alone equals the same fit trained in a stack, to the last bit. Only
:func:`attend_read` lets the compiler reorder its sums (into vector lanes, ``fastmath={"reassoc"}``):
that order is fixed by the row's length and the CPU, so results may differ in the last bits
from one kind of CPU to another, as OpenBLAS's products already do.

``consts`` holds the constants in the arrays' precision (float32 arithmetic stays float32):
``[1 / ln 2, 0, 1, 1/2, 1 / sqrt(D), -126, 1e30]`` (see :func:`attend_args` for the last two).

Compiled with numba, cached on disk (``cache=True``: numba writes beside this file, or under the
user's cache folder where this one is read-only); the GIL is released, so the trainer's threads
run side by side.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["condition_lists", "attend_args", "attend_read", "attend_back", "adam", "gather", "activate", "activate_back",
           "reparameterise", "reparameterise_back", "attention_scalars", "attention_grads"]



def _jit(fn=None, **options):
    """``numba.njit`` with the GIL released and the machine code cached on disk; where no cache
    folder is writable (numba's ``NUMBA_CACHE_DIR``, this package's, the user's), compiled anew in
    each process instead of failing at import."""
    def compile_(f):
        try:
            return njit(cache=True, nogil=True, error_model="numpy", **options)(f)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            return njit(cache=False, nogil=True, error_model="numpy", **options)(f)
    return compile_ if fn is None else compile_(fn)


@_jit
def condition_lists(P, C, Cc, Cc2, Cidx, Cstat, consts):
    """The condition embedding ``C = ReLU(P)`` (k, B, E) and, per row of the batch, its non-zero
    units, compacted, with their squares and indices.

    Writes ``C``, ``Cc``, ``Cc2`` (k, B, E) the non-zero values and their squares, ``Cidx``
    (k, B, E) their positions and ``Cstat`` (k, B, 4): max, min, the number of zero units (as a
    float) and of non-zero ones.
    """
    k, B, E = C.shape
    zero = consts[1]
    for m in range(k):
        for b in range(B):
            n = 0
            for j in range(E):
                C[m, b, j] = max(P[m, b, j], zero)
            hi, lo = C[m, b, 0], C[m, b, 0]
            for j in range(E):
                v = C[m, b, j]
                hi, lo = max(hi, v), min(lo, v)
                Cc[m, b, n], Cc2[m, b, n], Cidx[m, b, n] = v, v * v, j  # kept when v != 0: no branch to mispredict
                n += v != 0
            Cstat[m, b, 0], Cstat[m, b, 1], Cstat[m, b, 2], Cstat[m, b, 3] = hi, lo, E - n, n


@_jit
def _pad(n, to):
    """``n`` rounded up to a multiple of ``to``."""
    return (n + to - 1) // to * to


@_jit
def attend_args(P, h, Cc, Cstat, a, c, consts, s, hidx, hn, start, buf):
    """The exponents of every block (module docstring), in powers of 2; returns how many were written.

    Writes the query units ``h = ReLU(P)`` (k, B, I); ``a``, ``c`` (k, H) are the logit slope and
    offset. Writes the slopes ``s`` (k, B, H, I), the non-zero query units ``hidx`` (k, B, I) and
    their number ``hn`` (k, B), and each block's exponents ``s_i C_j / ln 2 - max_j``, row by row,
    into ``buf`` from ``start`` (k, B, H): the non-zero condition units, then the zero units'
    column, padded to a multiple of 8 columns; rows padded to a multiple of 4. Padding keeps every
    loop in whole vectors.

    Exponents are floored at ``consts[5]`` = -126, and padding gets -126 too (pushed there by
    ``-consts[6]``): NumPy's ``exp2`` takes a slow path (tens of times slower) for results below
    float32's smallest normal number 2^-126. A weight below 2^-126 of its row's largest (which is
    1) cannot change the normaliser (at least 1) nor, beside the largest, a moment; padding has
    the weight 0 in :func:`attend_read` and in the backward pass.
    """
    k, B, I = h.shape
    H, E = a.shape[1], Cc.shape[2]
    s2 = np.zeros(I + 1, dtype=buf.dtype)
    cpad = np.zeros(E + 8, dtype=buf.dtype)
    pen = np.zeros(E + 8, dtype=buf.dtype)
    l2, zero, floor, big = consts[0], consts[1], consts[5], consts[6]
    pos = 0
    for m in range(k):
        for b in range(B):
            nh = 0
            for i in range(I):
                h[m, b, i] = max(P[m, b, i], zero)
            for i in range(I):
                hidx[m, b, nh] = i  # kept when h != 0: no branch to mispredict
                nh += h[m, b, i] != 0
            hn[m, b] = nh
            nr, nc = nh + 1, int(Cstat[m, b, 3])
            nrq, ncp = _pad(nr, 4), _pad(nc + 1, 8)
            hi, lo = Cstat[m, b, 0], Cstat[m, b, 1]
            for q in range(ncp):  # column nc: the zero units (exponent 0 - max, or the floor if there are none)
                cpad[q] = Cc[m, b, q] if q < nc else zero
                pen[q] = zero if q < nc or (q == nc and nc < E) else -big
            for hh in range(H):
                am, cm = a[m, hh], c[m, hh]
                for i in range(I):
                    s[m, b, hh, i] = am * h[m, b, i] + cm
                s2[0] = cm * l2  # the shared row: h = 0
                for r in range(1, nr):
                    s2[r] = s[m, b, hh, hidx[m, b, r - 1]] * l2
                start[m, b, hh] = pos
                blk = buf[pos:pos + nrq * ncp].reshape((nrq, ncp))  # a view indexed from 0: the loops vectorise
                for r in range(nr):
                    s2r = s2[r]
                    shr = -max(s2r * hi, s2r * lo)  # minus the row maximum (C lies in [min C, max C])
                    row = blk[r]
                    for q in range(ncp):
                        row[q] = max(s2r * cpad[q] + shr + pen[q], floor)
                blk[nr:, :] = floor
                pos += nrq * ncp
    return pos


@_jit(fastmath={"reassoc"})
def attend_read(buf, start, Cc, Cc2, Cstat, hidx, hn, alpha, beta, consts, g, sec, Z, shared, out):
    """The moments of every block (``buf`` holding ``2^exponent``) and the layer's output.

    Writes per query unit the read ``g``, the second moment ``sec`` and the normaliser ``Z``
    (k, B, H, I); the shared row's ``(g, Z)`` in ``shared`` (k, B, H, 2); and
    ``out`` (k, B, I) = ``sum_h alpha_h g_h + beta`` with ``alpha`` (k, H), ``beta`` (k,).

    The only kernel whose sums the compiler may reorder (``fastmath={"reassoc"}``): each row's
    three sums run in vector lanes, in an order fixed by the loop's length and the CPU's vector
    width, the same whatever else the stack holds.
    """
    k, B, H, I = g.shape
    E = Cc.shape[2]
    zero, one = consts[1], consts[2]
    wz = np.zeros(E + 8, dtype=buf.dtype)  # each column's weight in the normaliser
    c1 = np.zeros(E + 8, dtype=buf.dtype)
    c2 = np.zeros(E + 8, dtype=buf.dtype)
    for m in range(k):
        for b in range(B):
            nh = hn[m, b]
            nr, nc, n0 = nh + 1, int(Cstat[m, b, 3]), Cstat[m, b, 2]
            nrq, ncp = _pad(nr, 4), _pad(nc + 1, 8)
            for q in range(ncp):
                wz[q] = one if q < nc else (n0 if q == nc else zero)
                c1[q] = Cc[m, b, q] if q < nc else zero
                c2[q] = Cc2[m, b, q] if q < nc else zero
            for hh in range(H):
                pos = start[m, b, hh]
                blk = buf[pos:pos + nrq * ncp].reshape((nrq, ncp))
                for r in range(nr):
                    row = blk[r]
                    z, m1, m2 = zero, zero, zero
                    for q in range(ncp):
                        e = row[q]
                        z += e * wz[q]
                        m1 += e * c1[q]
                        m2 += e * c2[q]
                    if r == 0:
                        shared[m, b, hh, 0], shared[m, b, hh, 1] = m1 / z, z
                        for i in range(I):
                            g[m, b, hh, i], sec[m, b, hh, i], Z[m, b, hh, i] = m1 / z, m2 / z, z
                    else:
                        i = hidx[m, b, r - 1]
                        g[m, b, hh, i], sec[m, b, hh, i], Z[m, b, hh, i] = m1 / z, m2 / z, z
            for i in range(I):
                y = alpha[m, 0] * g[m, b, 0, i]
                for hh in range(1, H):
                    y += alpha[m, hh] * g[m, b, hh, i]
                out[m, b, i] = y + beta[m]


@_jit
def attend_back(dy, h, buf, start, Cc, Cidx, Cstat, hidx, hn, a, c, alpha, s, g, sec, Z, shared, consts, dh, dP, dC,
                dscal, first):
    """Gradients of one attention layer for ``dy`` (k, B, I) = d loss / d out.

    Writes ``dh`` (k, B, I) and, through the ReLU that made ``h``, ``dP`` (k, B, I); adds d loss / d C to ``dC`` (k, B, E) (zeroed first if ``first``;
    entries of zero condition units stay 0: ReLU's mask drops them); writes
    ``dscal`` (k, 2, 2, H) = ``[[da, dc], [dalpha, dbeta]]`` (dbeta in head 0). The sums over
    query units run four rows at a time, in a fixed order.
    """
    k, B, I = dy.shape
    H = a.shape[1]
    E = dC.shape[2]
    zero = consts[1]
    W = np.zeros((3, I + 4), dtype=buf.dtype)
    R = np.empty((3, E + 8), dtype=buf.dtype)
    for m in range(k):
        dbeta = zero
        for hh in range(H):
            dscal[m, 0, 0, hh], dscal[m, 0, 1, hh], dscal[m, 1, 0, hh] = zero, zero, zero
        for b in range(B):
            nh = hn[m, b]
            nr, nc = nh + 1, int(Cstat[m, b, 3])
            nrq, ncp = _pad(nr, 4), _pad(nc + 1, 8)
            for i in range(I):
                dbeta += dy[m, b, i]
                dh[m, b, i] = zero
            if first:
                for j in range(E):
                    dC[m, b, j] = zero
            for hh in range(H):
                am, al = a[m, hh], alpha[m, hh]
                da, dc, dal, dg0 = zero, zero, zero, zero
                for i in range(I):
                    d, gi = dy[m, b, i], g[m, b, hh, i]
                    dal += d * gi
                    dg = d * al
                    ds = dg * (sec[m, b, hh, i] - gi * gi)  # d loss / d s_i
                    dc += ds
                    da += ds * h[m, b, i]
                    dh[m, b, i] += ds * am
                    dg0 += dg if h[m, b, i] == 0 else zero
                dscal[m, 0, 0, hh] += da
                dscal[m, 0, 1, hh] += dc
                dscal[m, 1, 0, hh] += dal
                if hh == H - 1:
                    for i in range(I):
                        dP[m, b, i] = dh[m, b, i] if h[m, b, i] > zero else zero
                W[0, 0] = dg0 / shared[m, b, hh, 1]  # the shared row carries the sum over the zero query units
                W[1, 0] = W[0, 0] * c[m, hh]
                W[2, 0] = W[1, 0] * shared[m, b, hh, 0]
                for r in range(1, nr):
                    i = hidx[m, b, r - 1]
                    W[0, r] = dy[m, b, i] * al / Z[m, b, hh, i]
                    W[1, r] = W[0, r] * s[m, b, hh, i]
                    W[2, r] = W[1, r] * g[m, b, hh, i]
                for r in range(nr, nrq):
                    W[0, r], W[1, r], W[2, r] = zero, zero, zero
                for q in range(ncp):
                    R[0, q], R[1, q], R[2, q] = zero, zero, zero
                pos = start[m, b, hh]
                blk = buf[pos:pos + nrq * ncp].reshape((nrq, ncp))
                for r in range(0, nrq, 4):  # R = E^T W
                    e0, e1, e2, e3 = blk[r], blk[r + 1], blk[r + 2], blk[r + 3]
                    u0, u1, u2, u3 = W[0, r], W[0, r + 1], W[0, r + 2], W[0, r + 3]
                    v0, v1, v2, v3 = W[1, r], W[1, r + 1], W[1, r + 2], W[1, r + 3]
                    x0, x1, x2, x3 = W[2, r], W[2, r + 1], W[2, r + 2], W[2, r + 3]
                    for q in range(ncp):
                        f0, f1, f2, f3 = e0[q], e1[q], e2[q], e3[q]
                        R[0, q] += (u0 * f0 + u1 * f1) + (u2 * f2 + u3 * f3)
                        R[1, q] += (v0 * f0 + v1 * f1) + (v2 * f2 + v3 * f3)
                        R[2, q] += (x0 * f0 + x1 * f1) + (x2 * f2 + x3 * f3)
                for q in range(nc):  # d loss / d C_j = sum_i E_ij W_i . (1, C_j, -1)
                    dC[m, b, Cidx[m, b, q]] += R[0, q] + Cc[m, b, q] * R[1, q] - R[2, q]
        dscal[m, 1, 1, 0] = dbeta


@_jit
def adam(p, g, m1, m2, k, coef):
    """One Adam step of rows ``[0, k)`` of the flat ``(M, P)`` buffers.

    ``coef`` holds ``[lr_t, beta1, 1 - beta1, beta2, 1 - beta2, eps]`` in the buffers' precision
    (``lr_t`` includes Keras' bias correction).
    """
    lr, b1, c1, b2, c2, ep = coef[0], coef[1], coef[2], coef[3], coef[4], coef[5]
    for m in range(k):
        for j in range(p.shape[1]):
            gj = g[m, j]
            m1[m, j] = b1 * m1[m, j] + c1 * gj
            m2[m, j] = b2 * m2[m, j] + c2 * (gj * gj)
            p[m, j] -= lr * m1[m, j] / (np.sqrt(m2[m, j]) + ep)


# ---------------------------------------------------------------------- the dense layers


@_jit
def gather(X, rows, out):
    """``out`` (k, B, n) = the rows ``rows`` (k * B,) of ``X`` (N, n)."""
    k, B, n = out.shape
    for m in range(k):
        for b in range(B):
            r = rows[m * B + b]
            for j in range(n):
                out[m, b, j] = X[r, j]


@_jit
def activate(P, Y, act, consts):
    """``Y = act(P)`` (k, B, n): 1 ReLU, 2 sigmoid."""
    zero, one = consts[1], consts[2]
    for m in range(P.shape[0]):
        for b in range(P.shape[1]):
            p, y = P[m, b], Y[m, b]
            if act == 1:
                for j in range(p.size):
                    y[j] = max(p[j], zero)
            else:
                for j in range(p.size):
                    y[j] = one / (one + np.exp(-p[j]))


@_jit
def activate_back(dY, Y, act, dP, consts):
    """``dP`` = d loss / d ``P`` from ``dY`` = d loss / d ``Y`` and the output ``Y`` of :func:`activate`."""
    zero, one = consts[1], consts[2]
    k, B, n = dY.shape
    for m in range(k):
        for b in range(B):
            for j in range(n):
                y = Y[m, b, j]
                dP[m, b, j] = (dY[m, b, j] if y > zero else zero) if act == 1 else dY[m, b, j] * ((one - y) * y)


@_jit
def reparameterise(zs, eps, se, za, consts):
    """``za[..., :L] = mu + se`` with ``se = exp(logvar / 2) eps``; ``zs`` (k, B, 2L) is ``mu | logvar``."""
    k, B, L = se.shape
    half = consts[3]
    for m in range(k):
        for b in range(B):
            for j in range(L):
                v = np.exp(zs[m, b, L + j] * half) * eps[m, b, j]
                se[m, b, j] = v
                za[m, b, j] = zs[m, b, j] + v


@_jit
def reparameterise_back(d_mu, d_logvar, dz, se, dZ, consts):
    """``dZ`` (k, B, 2L) = d loss / d ``(mu | logvar)`` from the loss's own terms and ``dz`` = d loss / d z."""
    k, B, L = dz.shape
    half = consts[3]
    for m in range(k):
        for b in range(B):
            for j in range(L):
                dZ[m, b, j] = d_mu[m, b, j] + dz[m, b, j]
                dZ[m, b, L + j] = d_logvar[m, b, j] + dz[m, b, j] * se[m, b, j] * half


@_jit
def attention_scalars(blk, bo, consts, pairs, ac, beta):
    """Both layers' ``(a, c, alpha, beta)`` (:meth:`battgen.model.UnitCrossAttention.scalars`).

    ``blk`` (k, 2, 7, H, D) the rows ``wq bq wv bv wk bk wo`` of each layer, ``bo`` (k, 2);
    writes ``pairs`` (k, 2, 2, 2, H) = ``[[wq.wk, bq.wk], [wv.wo, bv.wo]]``, ``ac`` (k, 2, 2, H)
    = ``[wq.wk, bq.wk] / sqrt(D)`` and ``beta`` (k, 2).
    """
    k, _, _, H, D = blk.shape
    for m in range(k):
        for layer in range(2):
            bsum = bo[m, layer]
            for h in range(H):
                for p in range(4):  # wq, bq with wk (row 4); wv, bv with wo (row 6)
                    other = 4 if p < 2 else 6
                    t = consts[1]
                    for d in range(D):
                        t += blk[m, layer, p, h, d] * blk[m, layer, other, h, d]
                    pairs[m, layer, p // 2, p % 2, h] = t
                ac[m, layer, 0, h] = pairs[m, layer, 0, 0, h] * consts[4]
                ac[m, layer, 1, h] = pairs[m, layer, 0, 1, h] * consts[4]
            for h in range(H):
                bsum += pairs[m, layer, 1, 1, h]
            beta[m, layer] = bsum


@_jit
def attention_grads(dscal, blk, consts, gblk, gbo):
    """Both layers' parameter gradients ``gblk`` (k, 2, 7, H, D), ``gbo`` (k, 2) from ``dscal``
    (k, 2, 2, 2, H) = d loss / d ``[[a, c], [alpha, beta]]`` (beta in head 0; every head's ``bv.wo``
    enters it alike). The key bias cancels in the softmax: its row stays 0."""
    k, _, _, H, D = blk.shape
    for m in range(k):
        for layer in range(2):
            dbeta = dscal[m, layer, 1, 1, 0]
            for h in range(H):
                d = (dscal[m, layer, 0, 0, h] * consts[4], dscal[m, layer, 0, 1, h] * consts[4], dscal[m, layer, 1, 0, h], dbeta)
                for j in range(D):
                    wq, bq, wv, bv = blk[m, layer, 0, h, j], blk[m, layer, 1, h, j], blk[m, layer, 2, h, j], blk[m, layer, 3, h, j]
                    wk, wo = blk[m, layer, 4, h, j], blk[m, layer, 6, h, j]
                    gblk[m, layer, 0, h, j], gblk[m, layer, 1, h, j] = d[0] * wk, d[1] * wk
                    gblk[m, layer, 2, h, j], gblk[m, layer, 3, h, j] = d[2] * wo, d[3] * wo
                    gblk[m, layer, 4, h, j] = d[0] * wq + d[1] * bq
                    gblk[m, layer, 6, h, j] = d[2] * wv + d[3] * bv
            gbo[m, layer] = dbeta
