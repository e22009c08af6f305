"""Normalised bipartite adjacency and sparse propagation (spec section 2).

Â = D^{-1/2} A D^{-1/2} over the (|U|+|I|)² symmetric user-item graph of training edges, no self
loops; zero-degree rows stay zero. Every propagation goes through ``propagate`` so tests can count
``torch.sparse.mm`` calls.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
                         *, zero_degree_as_one: bool = False) -> torch.Tensor:
    """Symmetric normalised adjacency as a torch sparse CSR tensor of shape (U+I, U+I).

    ``users``/``items`` are the training edges (duplicates collapse). ``zero_degree_as_one`` is SGL's
    convention for augmented subgraphs; with no self loops it changes nothing numerically (a zero-degree
    node has no entries) and is kept for clarity.
    """
    n = n_users + n_items
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64) + n_users
    rows = np.concatenate([users, items])
    cols = np.concatenate([items, users])
    a = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, n))
    a.sum_duplicates()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(axis=1)).ravel()
    if zero_degree_as_one:
        deg[deg == 0] = 1.0
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0).astype(np.float32)
    norm = sp.diags(inv_sqrt) @ a @ sp.diags(inv_sqrt)
    return scipy_to_torch_csr(norm.tocsr())


def scipy_to_torch_csr(m: sp.csr_matrix) -> torch.Tensor:
    m = m.tocsr()
    m.sort_indices()
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": we rely on mm only
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data.astype(np.float32)),
            size=m.shape,
            check_invariants=False,
        )


class _SymmetricSpMM(torch.autograd.Function):
    """Â·x for a symmetric Â: the gradient w.r.t. x is Â·g, computed with the same CSR tensor.

    torch's generic backward multiplies by Âᵀ, which for a CSR tensor goes through a slow transpose path;
    exploiting symmetry makes forward+backward about 10x faster on CPU (benchmarks/recsys_vs_recbole.py).
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:  # type: ignore[override]
        return None, torch.sparse.mm(ctx.adj, grad)


def propagate(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One graph convolution Â·x (the only place models call ``torch.sparse.mm``).

    Every adjacency built here is symmetric (D^{-1/2} A D^{-1/2} of an undirected graph), which the
    backward pass relies on.
    """
    if x.requires_grad:
        return _SymmetricSpMM.apply(adj, x)
    return torch.sparse.mm(adj, x)
