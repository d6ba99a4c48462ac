"""Windowed reductions: a pairwise term summed (or maximised, minimised) over the points y_j of the
batch item of each x_i, or over those closer than a cutoff.

An operator writes its term once, as a function of per-point tensors, with the operations that
KeOps LazyTensors and torch tensors share: +, -, *, /, ``**2``, ``exp``, ``relu``, ``any_sqrt``
(:mod:`gdl.ops.core.kernels`) and the helpers below (:func:`sqnorm`, :func:`dot`, :func:`concat`,
:func:`outer`, :func:`matvec`). Features live in the last dimension; a reduction over it keeps
a dimension of size 1, as KeOps does. :class:`Window` evaluates the term four ways:

- KeOps, exact: one LazyTensor reduction, with block-diagonal ranges for ragged batches;
- KeOps, truncated: block-sparse ranges over the points sorted by voxel
  (:mod:`gdl.ops.core.locality`), inputs permuted to that order and the output permuted back;
- torch, truncated: the gathered pairs (i, j) closer than the cutoff, in chunks, scattered back;
- torch, exact: dense blocks of (rows x points of the item), in chunks of rows,

and :meth:`Window.evaluate` recomputes over their whole item the rows whose truncated result is
not finite (a window that holds nothing to average).

The term receives the i-tensors (N, E) as x_i, the j-tensors (M, E) as y_j and the parameters
(flattened) in that order: (N, 1, E), (1, M, E) and (P,) tensors for dense blocks, (pairs, E) for
gathered pairs, i-, j- and parameter LazyTensors for KeOps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import torch

from gdl.ops.core.backend import import_pykeops
from gdl.ops.core.base import TORCH_BLOCK_ELEMENTS, row_chunks
from gdl.ops.core.batching import BatchPair, batch_pair
from gdl.ops.core.locality import LocalPairs, local_pairs


def _lazy(t) -> bool:
    return not isinstance(t, torch.Tensor)


def sqnorm(a):
    """|a|^2 over the feature dimension."""
    return (a**2).sum(-1) if _lazy(a) else (a**2).sum(-1, keepdim=True)


def dot(a, b):
    """<a, b> over the feature dimension."""
    return (a * b).sum(-1) if _lazy(a) else (a * b).sum(-1, keepdim=True)


def concat(*terms):
    """The features of ``terms`` side by side (broadcast over the other dimensions)."""
    if _lazy(terms[0]):
        return reduce(lambda a, b: a.concat(b), terms)
    shape = torch.broadcast_shapes(*(t.shape[:-1] for t in terms))
    return torch.cat([t.expand(*shape, t.shape[-1]) for t in terms], -1)


def outer(a, b):
    """The flattened outer product: entry (k, l) = a_k b_l at k * dim(b) + l."""
    if _lazy(a):
        return concat(*(b * a[k] for k in range(a.ndim)))
    return (a[..., :, None] * b[..., None, :]).flatten(-2)


def matvec(m, v):
    """m v for m a flattened row-major (n x dim(v)) matrix (per point, or a parameter)."""
    if _lazy(m):
        return m.matvecmult(v)
    rows = m.shape[-1] // v.shape[-1]
    if m.dim() == 1:
        return v @ m.view(rows, -1).T
    return (m.unflatten(-1, (rows, -1)) @ v[..., None])[..., 0]


def window(x, y, pair: BatchPair, batch_x, batch_y, backend: str, truncate=None, scale: float = 1.0):
    """The window of each x_i among the points y_j (N, D) and (M, D) of its batch item (``pair``
    their layout), cut at ``truncate`` * ``scale`` (None: every point of the item), evaluated with
    ``backend`` (``"keops"`` or ``"torch"``)."""
    local = None if truncate is None else local_pairs(x, y, pair, batch_x, batch_y, truncate * scale)
    return Window(x, y, pair, batch_x, batch_y, backend == "keops", local)


@dataclass
class Window:
    """Where each x_i looks: every y_j of its item, or (``local``) the voxel pairs within a cutoff;
    ``rows`` (an exact window for some rows of x only) picks the i-tensors' rows."""

    x: torch.Tensor
    y: torch.Tensor
    pair: BatchPair
    batch_x: torch.Tensor | None
    batch_y: torch.Tensor | None
    keops: bool
    local: LocalPairs | None
    rows: torch.Tensor | None = None

    @property
    def truncated(self) -> bool:
        return self.local is not None

    def sum(self, term, i=(), j=(), params=(), values=None, width: int = 1):
        """sum_j term_ij values_j (N, E): ``values`` (M, E) a j-tensor (None: 1) multiplying a term
        of E features or of one. ``width`` bounds the numbers one pair builds (torch chunks)."""
        return self._reduce("sum", term, i, j, params, values, width)

    def softmax(self, term, i=(), j=(), params=(), values=None, width: int = 1):
        """(sums, shift) for the log-weights u_ij = term_ij (K features, one per column of values or
        one for all): shift_i = max_j u_ij (K, a constant for autograd, -inf for an empty window)
        and sums_i = sum_j exp(u_ij - shift_i) values_j, finite however small the weights."""
        return self._reduce("softmax", term, i, j, params, values, width)

    def min(self, term, i=(), j=(), params=(), width: int = 1):
        """min_j term_ij (N, E), +inf for an empty window."""
        return self._reduce("min", term, i, j, params, None, width)

    def evaluate(self, fn):
        """fn(self), with the rows that are not finite (truncated windows with nothing in them)
        computed by fn over every point of their batch item."""
        out = fn(self)
        if not self.truncated:
            return out
        return exact_where_empty(out, fn, self.x, self.y, self.batch_x, self.batch_y, self.keops)

    def _reduce(self, kind, term, i, j, params, values, width):
        if self.rows is not None:
            i = [t[self.rows] for t in i]
        params = [p.reshape(-1) for p in params]
        if self.keops:
            return self._keops(kind, term, i, j, params, values)
        if self.truncated:
            return self._pairs(kind, term, i, j, params, values, width)
        return self._dense(kind, term, i, j, params, values, width)

    def _keops(self, kind, term, i, j, params, values):
        LazyTensor = import_pykeops().LazyTensor
        if self.truncated:
            i = [t[self.local.perm_x] for t in i]
            j = [t[self.local.perm_y] for t in j]
            values = None if values is None else values[self.local.perm_y]
            ranges = self.local.keops_ranges()
        else:
            ranges = self.pair.keops_ranges(self.x.device) if self.pair.num_items > 1 else None

        def lazy(i, j, params):
            return term(
                *(LazyTensor(t[:, None, :].contiguous()) for t in i),
                *(LazyTensor(t[None, :, :].contiguous()) for t in j),
                *(LazyTensor(p) for p in params),
            )

        def reduced(f, reduction):
            if values is not None and reduction == "sum":
                f = f * LazyTensor(values[None, :, :].contiguous())
            if ranges is not None:
                f.ranges = ranges
            return getattr(f, reduction)(dim=1)

        if kind != "softmax":
            out = reduced(lazy(i, j, params), kind)
        else:
            with torch.no_grad():
                shift = reduced(lazy(*[[t.detach() for t in ts] for ts in (i, j, params)]), "max")
            u = lazy(i, j, params)
            out = reduced((u - LazyTensor(shift[:, None, :].contiguous())).exp(), "sum"), shift
        if not self.truncated:
            return out
        inverse = self.local.inverse_x
        return (out[0][inverse], out[1][inverse]) if kind == "softmax" else out[inverse]

    def _dense(self, kind, term, i, j, params, values, width):
        blocks = []
        for _, sx, sy in self.pair.item_slices():
            i_item = [t[sx] for t in i]
            j_item = [t[sy][None] for t in j]
            v_item = None if values is None else values[sy]
            for rows in row_chunks(sx.stop - sx.start, sy.stop - sy.start, TORCH_BLOCK_ELEMENTS // width):
                f = term(*(t[rows, None, :] for t in i_item), *j_item, *params)
                blocks.append(_reduce_block(kind, f, v_item))
        if not blocks:  # no query point: the shape of the result from an empty block
            f = term(*(t[:0, None, :] for t in i), *(t[None] for t in j), *params)
            blocks.append(_reduce_block(kind, f, values))
        if kind == "softmax":
            return torch.cat([b[0] for b in blocks], 0), torch.cat([b[1] for b in blocks], 0)
        return torch.cat(blocks, 0)

    def _pairs(self, kind, term, i, j, params, values, width):
        n = self.x.shape[0]
        like = term(*(t[:0] for t in i), *(t[:0] for t in j), *params)
        if kind == "softmax":
            e = like.shape[1] if values is None else values.shape[1]
            softmax = StreamingSoftmax(n, like.shape[1], e, like)
        elif kind == "min":
            out = like.new_full((n, like.shape[1]), math.inf)
        else:
            out = like.new_zeros(n, like.shape[1] if values is None else values.shape[1])
        for pi, pj in self.local.pairs(self.x, self.y, TORCH_BLOCK_ELEMENTS // width):
            f = term(*(t[pi] for t in i), *(t[pj] for t in j), *params)
            v = None if values is None else values[pj]
            if kind == "softmax":
                softmax.add(pi, f, torch.ones_like(f) if v is None else v)
            elif kind == "min":
                out = out.scatter_reduce(0, pi[:, None].expand_as(f), f, reduce="amin")
            else:
                out = out.index_add(0, pi, f if v is None else f * v)
        return (softmax.sums, softmax.shift) if kind == "softmax" else out


def exact_where_empty(out, fn, x, y, batch_x, batch_y, keops: bool):
    """``out`` (one row per x_i) with the rows that are not finite recomputed by ``fn`` over an
    exact window: every point y_j of their batch item."""
    empty = ~torch.isfinite(out.detach()).reshape(out.shape[0], -1).all(1)
    if not bool(empty.any()):
        return out
    rows = empty.nonzero()[:, 0]
    batch = None if batch_x is None else batch_x[rows]
    pair = batch_pair(batch, batch_y, rows.numel(), y.shape[0])
    exact = Window(x[rows], y, pair, batch, batch_y, keops, None, rows)
    return out.index_put((rows,), fn(exact))


def _reduce_block(kind, f, values):
    """The reduction over the columns (dimension 1) of a dense block of terms (rows, M, E); over no
    column (M = 0): sums 0, maxima -inf, minima +inf."""
    if f.shape[1] == 0:
        return _reduce_nothing(kind, f, values)
    if kind == "min":
        return f.amin(1)
    if kind == "softmax":
        shift = f.detach().amax(1, keepdim=True)
        return _reduce_block("sum", (f - shift).exp(), values), shift[:, 0]
    if values is None:
        return f.sum(1)
    if f.shape[-1] == 1:
        return f[..., 0] @ values
    return (f * values).sum(1)


def _reduce_nothing(kind, f, values):
    """The reduction of a block of terms (rows, 0, E) over its columns, none."""
    rows, e = f.shape[0], f.shape[-1]
    if kind == "min":
        return f.new_full((rows, e), math.inf)
    sums = f.new_zeros(rows, e if values is None else values.shape[1])
    return (sums, f.new_full((rows, e), -math.inf)) if kind == "softmax" else sums


class StreamingSoftmax:
    """Log-domain sums over pairs given in chunks, for the truncated softmax on the torch backend.

    After ``add(i, u, v)`` for every chunk of pairs, ``shift`` (N, K) is max_j u_ij (-inf for rows
    without pairs, a constant for autograd) and ``sums`` (N, E) is sum_j exp(u_ij - shift_i) v_ij,
    differentiable in u and v (K = E, or 1). Rows met again in a later chunk are rescaled to the
    new maximum.
    """

    def __init__(self, n: int, k: int, e: int, like: torch.Tensor):
        self.shift = torch.full((n, k), -math.inf, dtype=like.dtype, device=like.device)
        self.sums = like.new_zeros(n, e)

    def add(self, i: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
        shift = self.shift.scatter_reduce(0, i[:, None].expand_as(u), u.detach(), reduce="amax")
        rescale = torch.where(shift == self.shift, torch.ones_like(shift), (self.shift - shift).exp())
        self.sums = (self.sums * rescale).index_add(0, i, (u - shift[i]).exp() * v)
        self.shift = shift
