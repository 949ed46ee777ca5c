"""Explicit-SIMD building blocks for the numba kernels, written as LLVM vector code.

numba vectorises a reduction loop by keeping vector partial sums and adding their
lanes at the loop's end. A kernel that applies several detectors to several
patterns in one sweep, tile by tile, would add lanes after every tile; here the
partial sums stay ``<8 x float>`` vectors in memory between tiles, so the
multiply-add loop is all that runs per pixel. The loop also hints the CPU to
fetch the data the *next* tile will need (``llvm.prefetch``), which lets the
memory traffic of one tile overlap the arithmetic of the previous one: measured
on a 2-core machine (bench/RESULTS.md), eight annular detectors over a 1 GiB cube
went from 0.086 s to 0.062-0.066 s, 1.25-1.35x one BLAS pass over it.

:func:`pair4_accumulate` is a numba intrinsic: it can only be called from
``@njit`` code. :data:`SIMD_DTYPES` lists the pattern dtypes it reads (integers
are converted to float32 on the fly). Whether the running numba can compile it is
found out once, by :func:`simd_available`; callers fall back to plain numba
kernels when it cannot.

References
----------
.. [1] LLVM Language Reference, "llvm.prefetch" and "llvm.fma" intrinsics,
   https://llvm.org/docs/LangRef.html
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["pair4_accumulate", "mac_pair_rows", "pair_row_spans", "simd_available", "SIMD_DTYPES", "LANES",
           "BLOCK_PATTERNS", "PREFETCH_LOCALITY"]

#: Vector width (float32 lanes) of the accumulators.
LANES = 8
#: Pattern dtypes :func:`pair4_accumulate` reads.
SIMD_DTYPES = (np.dtype(np.float32), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.uint8),
               np.dtype(np.int8))

_F32 = ir.FloatType()
_V8 = ir.VectorType(_F32, LANES)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_I8P = ir.IntType(8).as_pointer()

#: ``llvm.prefetch`` locality of the next tile's lines (3: into L1; 2: into L2).
PREFETCH_LOCALITY = 3


def _as_i64(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    return builder.sext(value, _I64) if value.type.width < 64 else value


def _load_float8(builder: ir.IRBuilder, ptr: ir.Value, dtype: types.Type) -> ir.Value:
    """Eight consecutive elements at ``ptr`` as ``<8 x float>``."""
    if dtype == types.float32:
        return builder.load(builder.bitcast(ptr, _V8.as_pointer()), align=4)
    width = dtype.bitwidth
    vec = ir.VectorType(ir.IntType(width), LANES)
    raw = builder.load(builder.bitcast(ptr, vec.as_pointer()), align=width // 8)
    return builder.uitofp(raw, _V8) if not dtype.signed else builder.sitofp(raw, _V8)


@intrinsic
def pair4_accumulate(typingctx, patterns, p, k0, k1, weights, start, n, acc, pf_row, pf_col, pf_lines):
    """Add ``patterns[p:p+4, start:start+n] @ weights[[k0, k1], start:start+n].T`` to ``acc``.

    Parameters (all from ``@njit`` code)
    ----------
    patterns : (N, P) C-contiguous array of a :data:`SIMD_DTYPES` dtype
    p : int
        First of the four patterns.
    k0, k1 : int
        Rows of ``weights`` (two detectors).
    weights : (K, P) float32 C-contiguous array
    start, n : int
        Pixel range; ``n`` a multiple of 8 (pad the range with zero weights).
    acc : (64,) float32 array
        Eight ``<8 x float>`` partial sums, pattern-major: vector ``2 i + c`` belongs to
        pattern ``p + i`` and detector ``k_c``. Read, added to, written back.
    pf_row, pf_col, pf_lines : int
        While the loop runs, hint the CPU to load ``pf_lines`` 64-byte cache lines (one
        per iteration) from ``[pf_row + i, pf_col]`` on, for each of the four patterns
        ``i`` (``pf_row + 3`` must be a row of ``patterns``).
    """
    if not (isinstance(patterns, types.Array) and patterns.ndim == 2 and patterns.layout == "C"
            and np.dtype(str(patterns.dtype)) in SIMD_DTYPES and isinstance(weights, types.Array)
            and weights.dtype == types.float32 and weights.layout == "C"
            and isinstance(acc, types.Array) and acc.dtype == types.float32):
        return None
    sig = types.void(patterns, p, k0, k1, weights, start, n, acc, pf_row, pf_col, pf_lines)

    def codegen(context, builder, signature, args):
        pty, wty, aty = signature.args[0], signature.args[4], signature.args[7]
        parr = context.make_array(pty)(context, builder, args[0])
        warr = context.make_array(wty)(context, builder, args[4])
        aarr = context.make_array(aty)(context, builder, args[7])
        p_, k0_, k1_, start_, n_, pf_row_, pf_col_, pf_lines_ = (
            _as_i64(builder, args[i]) for i in (1, 2, 3, 5, 6, 8, 9, 10))
        row_len = builder.extract_value(parr.shape, 1)

        def at(data: ir.Value, row: ir.Value, col: ir.Value) -> ir.Value:
            return builder.gep(data, [builder.add(builder.mul(row, row_len), col)])

        xs = [at(parr.data, builder.add(p_, ir.Constant(_I64, i)), start_) for i in range(4)]
        ws = [at(warr.data, k, start_) for k in (k0_, k1_)]
        pfs = [builder.bitcast(at(parr.data, builder.add(pf_row_, ir.Constant(_I64, i)), pf_col_), _I8P)
               for i in range(4)]
        line = ir.Constant(_I64, 64)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_I8P, _I32, _I32, _I32]), "llvm.prefetch.p0")
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8, [_V8, _V8, _V8]),
                                             "llvm.fma.v8f32")
        acc_ptrs = [builder.bitcast(builder.gep(aarr.data, [ir.Constant(_I64, LANES * q)]), _V8.as_pointer())
                    for q in range(8)]
        init = [builder.load(ptr, align=4) for ptr in acc_ptrs]

        entry = builder.block
        loop = builder.append_basic_block("pair4.loop")
        done = builder.append_basic_block("pair4.done")
        builder.cbranch(builder.icmp_signed(">", n_, ir.Constant(_I64, 0)), loop, done)

        builder.position_at_end(loop)
        j = builder.phi(_I64)
        it = builder.phi(_I64)
        sums = [builder.phi(_V8) for _ in range(8)]
        j.add_incoming(ir.Constant(_I64, 0), entry)
        it.add_incoming(ir.Constant(_I64, 0), entry)
        for s, v in zip(sums, init):
            s.add_incoming(v, entry)
        wv = [builder.load(builder.bitcast(builder.gep(w, [j]), _V8.as_pointer()), align=4) for w in ws]
        new = []
        for i in range(4):
            xv = _load_float8(builder, builder.gep(xs[i], [j]), pty.dtype)
            for c in range(2):
                new.append(builder.call(fma, [xv, wv[c], sums[2 * i + c]]))
        with builder.if_then(builder.icmp_signed("<", it, pf_lines_), likely=True):
            for pf in pfs:
                builder.call(prefetch, [builder.gep(pf, [builder.mul(it, line)]), ir.Constant(_I32, 0),
                                        ir.Constant(_I32, PREFETCH_LOCALITY), ir.Constant(_I32, 1)])
        tail = builder.block
        j_next = builder.add(j, ir.Constant(_I64, LANES))
        j.add_incoming(j_next, tail)
        it.add_incoming(builder.add(it, ir.Constant(_I64, 1)), tail)
        for s, v in zip(sums, new):
            s.add_incoming(v, tail)
        builder.cbranch(builder.icmp_signed("<", j_next, n_), loop, done)

        builder.position_at_end(done)
        final = []
        for v0, v in zip(init, new):
            phi = builder.phi(_V8)
            phi.add_incoming(v0, entry)
            phi.add_incoming(v, tail)
            final.append(phi)
        for ptr, v in zip(acc_ptrs, final):
            builder.store(v, ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _probe(patterns, weights, acc):
    pair4_accumulate(patterns, 0, 0, 1, weights, 0, 8, acc, 0, 0, 1)


@functools.lru_cache(maxsize=None)
def simd_available() -> bool:
    """True when this numba/LLVM compiles :func:`pair4_accumulate` and it computes right.

    Examples
    --------
    >>> isinstance(simd_available(), bool)
    True
    """
    try:
        x = np.arange(32, dtype=np.float32).reshape(4, 8)
        w = np.ones((2, 8), np.float32)
        w[1] = 2.0
        acc = np.zeros(64, np.float32)
        _probe(x, w, acc)
        got = acc.reshape(8, LANES).sum(axis=1)
        return bool(np.allclose(got, (x @ w.T).ravel()))
    except Exception:  # noqa: BLE001 - any compile failure means: use the plain kernels
        return False


#: Patterns per block of :func:`mac_pair_rows` (a multiple of 4): one detector row of
#: each sits in L1/L2 while the block's detector pairs are swept (measured best of 4-32).
BLOCK_PATTERNS = 8


@njit(cache=True, nogil=True)
def mac_pair_rows(patterns, weights, rlo, rhi, ulo, uhi, out, block):
    """Detector pairs applied to patterns four at a time, detector row by row, with prefetch.

    The many-detector sibling of :func:`~fourd_widgets.kernels.virtual.mac_ranges`.
    For each block of ``block`` patterns the detector is swept row by row; in each row
    a pair only covers its span of non-zero weights, partial sums stay SIMD vectors
    between rows (:func:`pair4_accumulate`), and while a row is multiplied the span of
    the next row that any detector needs is prefetched, so memory traffic and
    arithmetic overlap and detector corners no detector covers are never read.

    Parameters
    ----------
    patterns : (n, P) C-contiguous array, a dtype of :data:`SIMD_DTYPES`
        Flattened patterns of ``R`` rows; ``n`` a multiple of 4.
    weights : (2 G, P) float32 array
        Detector pairs: rows ``2 g`` and ``2 g + 1``.
    rlo, rhi : (G, R) int64 arrays
        Flattened span of pair ``g`` in detector row ``r``; multiples of 8, empty when
        ``rhi <= rlo`` (see :func:`pair_row_spans`).
    ulo, uhi : (R,) int64 arrays
        Union of the spans of each row (what is prefetched).
    out : (n, 2 G) float64 array
        Receives the sums; overwritten.
    block : int
        :data:`BLOCK_PATTERNS`.

    Examples
    --------
    >>> x = np.arange(64, dtype=np.float32).reshape(4, 16)
    >>> w = np.zeros((2, 16), np.float32); w[0, :8] = 1; w[1, 8:] = 1
    >>> out = np.empty((4, 2))
    >>> mac_pair_rows(x, w, *pair_row_spans(w, 8), out, 4); out.tolist()[0]
    [28.0, 92.0]
    """
    n = patterns.shape[0]
    G, R = rlo.shape
    itemsize = patterns.itemsize
    acc = np.zeros((block // 4, G, 8 * LANES), np.float32)
    for b0 in range(0, n, block):
        b1 = min(b0 + block, n)
        acc[:] = 0.0
        for r in range(R):
            for q in range((b1 - b0) // 4):
                p = b0 + 4 * q
                c = 0
                for g in range(G):
                    a = rlo[g, r]
                    b = rhi[g, r]
                    if b <= a:
                        continue
                    # the widest pair of the row (first call) prefetches the four patterns'
                    # next row; in the last row, the first row of the next block's patterns
                    pr, pc, pn = p, 0, 0
                    if c == 0 and r + 1 < R:
                        pr, pc, pn = p, ulo[r + 1], (uhi[r + 1] - ulo[r + 1]) * itemsize // 64 + 1
                    elif c == 0 and p + block + 3 < n:
                        pr, pc, pn = p + block, ulo[0], (uhi[0] - ulo[0]) * itemsize // 64 + 1
                    c += 1
                    pair4_accumulate(patterns, p, 2 * g, 2 * g + 1, weights, a, b - a, acc[q, g], pr, pc, pn)
        for q in range((b1 - b0) // 4):
            for g in range(G):
                for v in range(8):
                    s = 0.0
                    for lane in range(LANES):
                        s += acc[q, g, LANES * v + lane]
                    out[b0 + 4 * q + v // 2, 2 * g + v % 2] = s


def pair_row_spans(weights: np.ndarray, width: int) -> tuple[np.ndarray, ...]:
    """Per-row spans of non-zero weights of each detector pair, for :func:`mac_pair_rows`.

    Parameters
    ----------
    weights : (2 G, R * width) array
        Detector pairs over the flattened detector; ``width`` a multiple of 8.
    width : int
        Detector row length.

    Returns
    -------
    rlo, rhi : (G, R) int64 arrays
        Flattened span per pair and row, widened to multiples of 8 (empty: equal).
    ulo, uhi : (R,) int64 arrays
        Union span per row.

    Examples
    --------
    >>> w = np.zeros((2, 32)); w[0, 3] = 1; w[1, 20] = 1
    >>> [a.tolist() for a in pair_row_spans(w, 16)]
    [[[0, 16]], [[8, 24]], [0, 16], [8, 24]]
    """
    G, R = weights.shape[0] // 2, weights.shape[1] // width
    nz = (weights.reshape(G, 2, R, width) != 0).any(axis=1)  # (G, R, width)
    has = nz.any(axis=2)
    first = np.where(has, nz.argmax(axis=2), 0)
    last = np.where(has, width - nz[:, :, ::-1].argmax(axis=2), 0)
    base = np.arange(R, dtype=np.int64) * width
    rlo = np.where(has, base + first // LANES * LANES, 0).astype(np.int64)
    rhi = np.where(has, base + np.minimum(width, -(-last // LANES) * LANES), 0).astype(np.int64)
    any_row = has.any(axis=0)
    ulo = np.where(any_row, np.where(has, rlo, np.iinfo(np.int64).max).min(axis=0), 0).astype(np.int64)
    uhi = np.where(any_row, rhi.max(axis=0), 0).astype(np.int64)
    return rlo, rhi, ulo, uhi
