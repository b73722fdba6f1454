"""Compiled CPU kernels of :mod:`iqa_lib.scorers.nss` (numba; imported on first use).

Each does, image by image, the operations of its tensor counterpart in
:mod:`~iqa_lib.scorers.nss` in the same order, one rounding per operation
(numba without fastmath: no fused multiply-add, no reassociation), so it gives
the same bits (the one exception: ``mscn``'s square root, see ``nss.mscn``):

* ``rgb2gray(src uint8 (M, 3, H, W), weights, out (M, 1, H, W))``: ``nss.matlab_rgb2gray``;
* ``mscn(gray (M, H, W), taps, replicate, out)``: ``nss.mscn`` with
  ``nss.gaussian_filter`` (down the columns, then along the rows, taps in
  order), one output row at a time from two filter rows that stay in the
  caches, instead of ~60 tensor passes over whole planes;
* ``brisque_moments(z (M, H, W), shifts (S, 2), out (M, 1 + S, 5))``: the
  ``nss.Moments`` of ``z`` and of each ``z * circshift(z, shift)``, the
  products made row by row and summed in the order of ``nss.moments``' kernel
  (four interleaved sums over the flattened plane), never stored;
* ``resize(x (M, H, W), wh, wh_lo, wh_hi, ww, ww_lo, ww_hi, out)``: the two
  products of ``nss.imresize_half`` over the weights' nonzero bands only
  (~10 taps instead of H or W; exact on integer images, as the matmul).

Module-level functions, so numba's on-disk cache (``cache=True``) finds them
again in the next process; all ``nogil``, so ``nss.by_chunks`` runs them in
threads. No kernel allocates an image-sized buffer (fresh large allocations
cost page faults on every call).
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True)
# The steps a kernel is written in, inlined into it in Numba's IR: the compiled kernel is the one
# loop nest it was before the split (a call per row cost brisque_moments 5-11%, measured).
step = numba.njit(cache=True, nogil=True, inline="always")


@jit
def rgb2gray(src, wts, out):  # pragma: no cover (compiled)
    m_, _, h, w = src.shape
    w0, w1, w2 = wts[0], wts[1], wts[2]
    for m in range(m_):
        for y in range(h):
            for x in range(w):
                v = float(src[m, 0, y, x]) * w0 + float(src[m, 1, y, x]) * w1
                v = v + float(src[m, 2, y, x]) * w2
                out[m, 0, y, x] = min(max(np.floor(v + 0.5), 0.0), 255.0)


@jit
def mscn(g, k, replicate, out):  # pragma: no cover (compiled)
    m_, h, w = g.shape
    t = k.shape[0]
    r = t // 2
    wp = w + 2 * r
    c1 = np.empty(wp)  # the column pass of one output row: I ...
    c2 = np.empty(wp)  # ... and I^2, over the padded width
    a1 = np.empty(w)
    a2 = np.empty(w)
    for m in range(m_):
        for y in range(h):
            _column_pass(g[m], y, k, replicate, c1, c2)
            _pad_columns(c1, c2, r, w, replicate)
            _row_pass(c1, c2, k, a1, a2)
            for x in range(w):
                mu = a1[x]
                sigma = np.sqrt(abs(a2[x] - mu * mu)) + 1.0
                out[m, y, x] = (g[m, y, x] - mu) / sigma


@step
def _column_pass(plane, y, k, replicate, c1, c2):  # pragma: no cover (compiled)
    # Down the columns, padded row y + i (taps 0..t-1), as the padded plane, into
    # c1 (I) and c2 (I^2) from index r; a zero-padded row adds 0 * k[i], as the tensor ops do.
    h, w = plane.shape
    t = k.shape[0]
    r = t // 2
    for i in range(t):
        ki = k[i]
        sy = y + i - r
        inside = 0 <= sy < h
        if replicate:
            sy = min(max(sy, 0), h - 1)
            inside = True
        for x in range(w):
            v = plane[sy, x] if inside else 0.0
            if i == 0:
                c1[r + x] = v * ki
                c2[r + x] = (v * v) * ki
            else:
                c1[r + x] = c1[r + x] + v * ki
                c2[r + x] = c2[r + x] + (v * v) * ki


@step
def _pad_columns(c1, c2, r, w, replicate):  # pragma: no cover (compiled)
    # Padded columns: zeros give 0.0; replicated ones repeat the edge column.
    for xx in range(r):
        if replicate:
            c1[xx], c2[xx] = c1[r], c2[r]
            c1[r + w + xx], c2[r + w + xx] = c1[r + w - 1], c2[r + w - 1]
        else:
            c1[xx] = c2[xx] = c1[r + w + xx] = c2[r + w + xx] = 0.0


@step
def _row_pass(c1, c2, k, a1, a2):  # pragma: no cover (compiled)
    # Along the row: taps 0..t-1.
    w = a1.shape[0]
    k0 = k[0]
    for x in range(w):
        a1[x] = c1[x] * k0
        a2[x] = c2[x] * k0
    for j in range(1, k.shape[0]):
        kj = k[j]
        for x in range(w):
            a1[x] = a1[x] + c1[x + j] * kj
            a2[x] = a2[x] + c2[x + j] * kj


@jit
def accumulate(vals, i0, n4, sn, sp, sa, cnt):  # pragma: no cover (compiled)
    # Adds vals (flat indices i0, i0 + 1, ...) to the four interleaved sums of the
    # moments kernel: index i goes to sum i % 4, the tail (i >= n4) to sum 0.
    n = vals.shape[0]
    if i0 % 4 == 0 and i0 + n <= n4 and n % 4 == 0:  # whole groups of four
        _accumulate_fours(vals, sn, sp, sa, cnt)
    else:
        _accumulate_each(vals, i0, n4, sn, sp, sa, cnt)


@step
def _accumulate_fours(vals, sn, sp, sa, cnt):  # pragma: no cover (compiled)
    # vals in whole groups of four, aligned with the sums: four sums in registers each.
    n0, n1, n2, n3 = sn[0], sn[1], sn[2], sn[3]
    p0, p1, p2, p3 = sp[0], sp[1], sp[2], sp[3]
    a0, a1, a2, a3 = sa[0], sa[1], sa[2], sa[3]
    cn = 0
    cp = 0
    for i in range(0, vals.shape[0], 4):
        v0, v1, v2, v3 = vals[i], vals[i + 1], vals[i + 2], vals[i + 3]
        n0 += v0 * v0 if v0 < 0.0 else 0.0
        n1 += v1 * v1 if v1 < 0.0 else 0.0
        n2 += v2 * v2 if v2 < 0.0 else 0.0
        n3 += v3 * v3 if v3 < 0.0 else 0.0
        p0 += v0 * v0 if v0 > 0.0 else 0.0
        p1 += v1 * v1 if v1 > 0.0 else 0.0
        p2 += v2 * v2 if v2 > 0.0 else 0.0
        p3 += v3 * v3 if v3 > 0.0 else 0.0
        a0 += abs(v0)
        a1 += abs(v1)
        a2 += abs(v2)
        a3 += abs(v3)
        cn += (v0 < 0.0) + (v1 < 0.0) + (v2 < 0.0) + (v3 < 0.0)
        cp += (v0 > 0.0) + (v1 > 0.0) + (v2 > 0.0) + (v3 > 0.0)
    sn[0], sn[1], sn[2], sn[3] = n0, n1, n2, n3
    sp[0], sp[1], sp[2], sp[3] = p0, p1, p2, p3
    sa[0], sa[1], sa[2], sa[3] = a0, a1, a2, a3
    cnt[0] += cn
    cnt[1] += cp


@step
def _accumulate_each(vals, i0, n4, sn, sp, sa, cnt):  # pragma: no cover (compiled)
    # Value by value: a row that starts or ends inside a group of four, or reaches the tail.
    for i in range(vals.shape[0]):
        v = vals[i]
        k = (i0 + i) % 4 if i0 + i < n4 else 0
        s = v * v
        if v < 0.0:
            sn[k] += s
            cnt[0] += 1
        elif v > 0.0:
            sp[k] += s
            cnt[1] += 1
        sa[k] += abs(v)


@jit
def brisque_moments(z, shifts, out):  # pragma: no cover (compiled)
    m_, h, w = z.shape
    ns = shifts.shape[0]
    n = h * w
    n4 = n - n % 4
    buf = np.empty(w)
    sums = np.zeros((1 + ns, 3, 4))
    cnt = np.zeros((1 + ns, 2), np.int64)
    for m in range(m_):
        sums[:] = 0.0
        cnt[:] = 0
        for y in range(h):
            accumulate(z[m, y], y * w, n4, sums[0, 0], sums[0, 1], sums[0, 2], cnt[0])
            for j in range(ns):
                sy = (y - shifts[j, 0]) % h  # circshift: row y meets row y - dy
                dx = shifts[j, 1] % w
                for x in range(dx, w):
                    buf[x] = z[m, y, x] * z[m, sy, x - dx]
                for x in range(dx):
                    buf[x] = z[m, y, x] * z[m, sy, x - dx + w]
                a = sums[1 + j]
                accumulate(buf, y * w, n4, a[0], a[1], a[2], cnt[1 + j])
        for j in range(1 + ns):
            for f in range(3):
                s = sums[j, f]
                out[m, j, 2 * f] = (s[0] + s[1]) + (s[2] + s[3])
            out[m, j, 1] = cnt[j, 0]
            out[m, j, 3] = cnt[j, 1]


@jit
def resize(x, wh, wh_lo, wh_hi, ww, ww_lo, ww_hi, out):  # pragma: no cover (compiled)
    m_, h, w = x.shape
    oh, ow = out.shape[1], out.shape[2]
    tmp = np.empty((oh, w))
    for m in range(m_):
        for o in range(oh):
            for c in range(w):
                tmp[o, c] = 0.0
            for i in range(wh_lo[o], wh_hi[o]):
                wt = wh[o, i]
                for c in range(w):
                    tmp[o, c] += wt * x[m, i, c]
        for o in range(oh):
            for p in range(ow):
                acc = 0.0
                for c in range(ww_lo[p], ww_hi[p]):
                    acc += tmp[o, c] * ww[p, c]
                out[m, o, p] = acc


@jit
def flat_fraction(g, radius, out):  # pragma: no cover (compiled)
    """``nss.flat_fraction``: share of pixels whose (2r+1)^2 window (clamped) has one level."""
    m_, h, w = g.shape
    bad = np.empty((h + 1, w), np.int32)  # per column, prefix over rows: row segment not constant
    vch = np.empty((h + 1, w), np.int32)  # per column, prefix over rows: level differs from row above
    last = np.empty(w, np.int32)  # per row: column of the last level change at or before x
    for m in range(m_):
        _level_change_prefixes(g[m], radius, bad, vch, last)
        out[m] = _count_flat(bad, vch, radius) / (h * w)


@step
def _level_change_prefixes(plane, radius, bad, vch, last):  # pragma: no cover (compiled)
    # bad[y + 1, x]: rows 0..y whose clamped segment x - r .. x + r holds a level change;
    # vch[y + 1, x]: rows 1..y whose level at x differs from the row above.
    h, w = plane.shape
    for x in range(w):
        bad[0, x] = 0
        vch[0, x] = 0
    for y in range(h):
        last[0] = 0
        for x in range(1, w):
            last[x] = x if plane[y, x] != plane[y, x - 1] else last[x - 1]
        for x in range(w):
            lo = max(0, x - radius)
            hi = min(w - 1, x + radius)
            bad[y + 1, x] = bad[y, x] + (1 if last[hi] > lo else 0)
            vch[y + 1, x] = vch[y, x] + (1 if y > 0 and plane[y, x] != plane[y - 1, x] else 0)


@step
def _count_flat(bad, vch, radius):  # pragma: no cover (compiled)
    # Pixels whose clamped window has no changed row segment and no change between its rows.
    h, w = bad.shape[0] - 1, bad.shape[1]
    count = 0
    for y in range(h):
        a = max(0, y - radius)
        b = min(h - 1, y + radius)
        for x in range(w):
            if bad[b + 1, x] == bad[a, x] and vch[b + 1, x] == vch[a + 1, x]:
                count += 1
    return count
