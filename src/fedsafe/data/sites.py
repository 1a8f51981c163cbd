"""Splits of a federation partitioned by site (``splits.partition: sites``; the image-folder task's sites CSV).

Real federations are partitioned by hospital, not by shards: client i holds the images of the i-th site (sites
a-z). Each site is split on its own by :func:`fedsafe.data.splits.make_splits` with one client: its share of
the global test set and of the server set (a fraction applies to every site; a count is shared out in
proportion to the sites' sizes, largest remainders first), then the client's attack/test set, the rest its
training data. The global test and server sets are the union of the sites' shares, so they represent every
site; near-duplicate and patient groups stay whole inside a site. A group whose images lie at two sites
cannot stay whole: it is counted in the notes.

Example::

    >>> import numpy as np
    >>> labels = np.tile([0, 1], 100); sites = ["A"] * 120 + ["B"] * 80
    >>> s = site_splits(labels, sites, num_clients=2, client_test_size=10, server_size=0.1,
    ...                 global_test_size=20, rng=np.random.default_rng(0))
    >>> [len(t) for t in s.client_test], len(s.server), len(s.global_test), [len(t) for t in s.client_train]
    ([10, 10], 20, 20, [86, 54])
    >>> bool(np.all(np.isin(s.client_train[1], np.arange(120, 200))))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .splits import Size, Splits, make_splits

__all__ = ["share_out", "site_splits"]


def share_out(total: int, sizes: Sequence[int]) -> list[int]:
    """``total`` shared out in proportion to ``sizes`` (largest remainders first; ties to the earlier).

    >>> share_out(20, [120, 80]), share_out(5, [1, 1, 1])
    ([12, 8], [2, 2, 1])
    """
    weight = np.asarray(sizes, dtype=np.float64)
    exact = total * weight / weight.sum()
    base = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - base), kind="stable")
    base[order[: total - int(base.sum())]] += 1
    return base.tolist()


def site_splits(labels: np.ndarray, sites: Sequence[str], *, num_clients: int, client_test_size: Size,
                server_size: Size, global_test_size: Size, rng: np.random.Generator,
                groups: np.ndarray | None = None) -> Splits:
    """Per-site splits (module docstring): client i = the i-th site a-z. Raises ValueError (one line) when
    ``num_clients`` is not the number of sites."""
    labels = np.asarray(labels)
    if len(sites) != len(labels):
        raise ValueError(f"sites has {len(sites)} entries for {len(labels)} images")
    names = sorted(set(sites))
    if num_clients != len(names):
        raise ValueError(f"splits.partition=sites: the sites CSV names {len(names)} site(s) ({', '.join(names)}), "
                         f"so set splits.num_clients={len(names)} (got {num_clients})")
    site_arr = np.asarray(sites, dtype=object)
    members = [np.flatnonzero(site_arr == s) for s in names]
    sizes = [len(m) for m in members]

    def per_site(size: Size) -> list[Size]:
        return [size] * len(names) if isinstance(size, float) else share_out(int(size), sizes)

    glob, server = per_site(global_test_size), per_site(server_size)
    parts, notes = [], []
    for i, idx in enumerate(members):
        s = make_splits(labels[idx], num_clients=1, client_test_size=client_test_size, server_size=server[i],
                        global_test_size=glob[i], partition="iid", rng=rng,
                        groups=None if groups is None else np.asarray(groups)[idx])
        parts.append((idx, s))
        notes += [f"site {names[i]}: {n}" for n in s.notes]
    if groups is not None:
        site_code = np.unique(site_arr.astype(str), return_inverse=True)[1].reshape(-1)
        pairs = np.unique(np.stack([np.asarray(groups, dtype=np.int64), site_code], axis=1), axis=0)
        cut = int(np.sum(np.unique(pairs[:, 0], return_counts=True)[1] > 1))
        if cut:
            notes.append(f"{cut} near-duplicate or patient group(s) have images at two or more sites: each site keeps "
                         "its own, so those groups are cut")
    return Splits(
        global_test=np.sort(np.concatenate([idx[s.global_test] for idx, s in parts])),
        server=np.sort(np.concatenate([idx[s.server] for idx, s in parts])),
        client_test=tuple(np.sort(idx[s.client_test[0]]) for idx, s in parts),
        client_train=tuple(np.sort(idx[s.client_train[0]]) for idx, s in parts),
        notes=tuple(notes),
    )
