"""Distribution of pair distances on the brain-tumour tasks: what the same-scan rule (``fedsafe.data.scans``) is
chosen from (design §1.4). Prints the Markdown of ``docs/results/scan-groups.md``'s measured part.

    python benchmarks/scan_pairs.py [--data ../shared/data/brain-tumor-mri] [--tasks meningioma glioma]
                                    [--seeds 0 1 2 3 4]

For each task, after exact de-duplication (the kept files, in the reader's order):

1. every image decoded at 256x256 grey (the near-duplicate reference) and at 128x128 grey (PIL, as a check of the
   2x2 block means the rule uses); pHash of the 256 px image;
2. candidate pairs: each image's 3 nearest by pHash, consecutive file numbers in one folder ("gg (606)" /
   "gg (607)"), and every pair with mean |difference| < 0.05 at 128 px (exact search, ``scans.close_pairs``);
3. tables: the candidates' distances (mean |difference| at 256 px and at 128 px, pHash bits) by quantile; the
   pairs by difference at 128 px, split by pHash distance, with the share whose file numbers are at most 2 apart
   (a sign of one scan); each image's nearest other image (outside its near-duplicate group); what candidate rules
   would group; and how many neighbour pairs (< 0.02 at 128 px, PIL decode) the cpu profile's splits cut with the
   near-duplicate groups alone and with the joined split groups.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from fedsafe.config import load_config
from fedsafe.data.decode import decode_files
from fedsafe.data.grouping import cached_groups
from fedsafe.data.mri import list_mri_files
from fedsafe.data.neardup import NearDuplicateSettings, connected_groups, hamming, mean_abs_difference, phashes
from fedsafe.data.scans import ScanSettings, close_pairs, half_size
from fedsafe.data.splits import make_splits
from fedsafe.data.tasks import load_task
from fedsafe.seeding import numpy_rng

BINS = [0.0, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05]
RULES = [("< 0.02", 0.02, 0.02, 0), ("< 0.025", 0.025, 0.025, 0), ("< 0.03", 0.03, 0.03, 0),
         ("< 0.035", 0.035, 0.035, 0), ("< 0.025, or < 0.03 and pHash <= 10", 0.025, 0.03, 10),
         ("< 0.025, or < 0.035 and pHash <= 10 (chosen)", 0.025, 0.035, 10),
         ("< 0.025, or < 0.04 and pHash <= 10", 0.025, 0.04, 10)]


def _number(name: str) -> tuple[str, int]:
    m = re.search(r"^(.*)\((\d+)\)\.\w+$", name)
    return (m.group(1).strip(), int(m.group(2))) if m else (name, -1)


def _q(values: np.ndarray, fmt: str = "{:.4f}") -> str:
    if not len(values):
        return "| - | - | - | - | - |"
    return "| " + " | ".join(fmt.format(v) for v in np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])) + " |"


def measure(root: Path, task: str, seeds: list[int]) -> None:
    t0 = time.perf_counter()
    table, report = load_task(task, data_root=root, image_size=32, channels=1, use_cache=False,
                              near_duplicates=True)
    by_hash: dict[str, Path] = {}
    for f in list_mri_files(root, task):
        by_hash.setdefault(f.sha256, f.path)
    paths = [by_hash[h] for h in table.ids]
    names = [str(p.relative_to(root)) for p in paths]
    g256 = decode_files(paths, size=256, channels=1, strict=True).images[..., 0]
    g128 = decode_files(paths, size=128, channels=1, strict=True).images[..., 0]
    grouped = cached_groups(paths, list(table.ids), NearDuplicateSettings(), ScanSettings(), cache_dir=None)
    near = grouped.near.groups
    n = len(paths)
    hashes = phashes(g256)
    sums = half_size(g256)
    folder = [_number(nm) for nm in names]
    print(f"\n## {task}: {n} images after exact de-duplication\n")

    # candidates
    hd = hamming(hashes[:, None], hashes[None, :])
    np.fill_diagonal(hd, 65)
    nearest = np.argsort(hd, axis=1, kind="stable")[:, :3]
    by_hash_pairs = np.unique(np.sort(np.stack([np.repeat(np.arange(n), 3), nearest.reshape(-1)], 1), axis=1), axis=0)
    index = {f: i for i, f in enumerate(folder)}
    consecutive = np.array([(i, index[(p, k + 1)]) for i, (p, k) in enumerate(folder) if (p, k + 1) in index],
                           dtype=np.int64).reshape(-1, 2)
    close, close_d = close_pairs(sums, 0.05, peak=1020)
    for label, pairs in (("3 nearest by pHash", by_hash_pairs), ("consecutive file numbers", consecutive),
                         ("all pairs < 0.05 at 128 px", close)):
        other = near[pairs[:, 0]] != near[pairs[:, 1]]
        pairs = pairs[other]
        print(f"**{label}** ({len(pairs)} pairs, outside near-duplicate groups); quantiles 5/25/50/75/95%:\n")
        print("| distance | 5% | 25% | 50% | 75% | 95% |\n|---|---|---|---|---|---|")
        print("| mean abs diff, 256 px " + _q(mean_abs_difference(g256, pairs)))
        print("| mean abs diff, 128 px " + _q(mean_abs_difference(sums, pairs) * 255 / 1020))
        print("| pHash bits " + _q(hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]]).astype(float), "{:.0f}"))
        print()
    pil = mean_abs_difference(g128, close)
    print(f"128 px by 2x2 block means vs PIL's own 128 px decode, over the {len(close)} pairs < 0.05: largest "
          f"gap {np.max(np.abs(pil - close_d)):.4f}\n")

    # histogram of the close pairs
    other = near[close[:, 0]] != near[close[:, 1]]
    pairs, diff = close[other], close_d[other]
    bits = hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]])
    gap = np.array([abs(folder[i][1] - folder[j][1]) if folder[i][0] == folder[j][0] else 10**6 for i, j in pairs])
    print("Pairs by mean |difference| at 128 px (outside near-duplicate groups); 'numbers <= 2 apart': share of the "
          "pairs whose files are in one folder with numbers at most 2 apart:\n")
    print("| difference | pairs | pHash <= 10 | numbers <= 2 apart (pHash <= 10) | pHash > 10 | numbers <= 2 apart "
          "(pHash > 10) |\n|---|---|---|---|---|---|")
    for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
        m = (diff >= lo) & (diff < hi)
        lo_h, hi_h = m & (bits <= 10), m & (bits > 10)
        share = [f"{np.mean(gap[k] <= 2):.2f}" if k.any() else "-" for k in (lo_h, hi_h)]
        print(f"| [{lo:.3f}, {hi:.3f}) | {m.sum()} | {lo_h.sum()} | {share[0]} | {hi_h.sum()} | {share[1]} |")

    # each image's nearest other image
    best = np.full(n, np.inf)
    for (i, j), d in zip(close, close_d, strict=True):
        if near[i] != near[j]:
            best[i], best[j] = min(best[i], d), min(best[j], d)
    counts = np.histogram(best, BINS + [np.inf])[0]
    print("\nEach image's nearest other image (outside its near-duplicate group), mean |difference| at 128 px:\n")
    print("| nearest | " + " | ".join(f"< {b:g}" for b in BINS[1:]) + " | >= 0.05 |")
    print("|---" * (len(BINS) + 1) + "|")
    print("| images | " + " | ".join(str(c) for c in counts) + " |")

    # rules
    pil_pairs = close[pil < 0.02]
    print("\nWhat each rule groups (joined with the near-duplicates); 'cut': neighbour pairs (< 0.02 at 128 px, PIL "
          f"decode: {len(pil_pairs)} pairs) with a held-out image, cut by the cpu profile's splits, seeds "
          f"{', '.join(map(str, seeds))}:\n")
    print("| same scan when mean abs diff at 128 px | pairs | groups | images in groups | largest | cut |\n"
          "|---|---|---|---|---|---|")
    bits_all = hamming(hashes[close[:, 0]], hashes[close[:, 1]])
    print(f"| (near-duplicates only) | 0 | {_row(near, pil_pairs, table.labels, seeds)}")
    for label, t, loose, h in RULES:
        keep = (close_d < t) | ((close_d < loose) & (bits_all <= h))
        groups = connected_groups(n, np.concatenate([grouped.near.pairs, close[keep]]))
        print(f"| {label} | {keep.sum()} | {_row(groups, pil_pairs, table.labels, seeds)}")
    print(f"\n({task}: {time.perf_counter() - t0:.0f} s)")


def _size(v: float) -> int | float:
    return int(v) if v >= 1 else float(v)


def _row(groups: np.ndarray, neighbours: np.ndarray, labels: np.ndarray, seeds: list[int]) -> str:
    sizes = np.bincount(np.unique(groups, return_inverse=True)[1])
    multi = sizes[sizes > 1]
    cfg = load_config(profile="cpu")
    s = cfg.splits
    cut = []
    for seed in seeds:
        splits = make_splits(labels, num_clients=s.num_clients, client_test_size=s.client_test_size,
                             server_size=_size(s.server_size), global_test_size=_size(s.global_test_size),
                             partition=s.partition, partition_kwargs={"num_shards": s.num_shards}, groups=groups,
                             rng=numpy_rng(seed, "splits"))
        sets = splits.named_sets()
        owner = np.full(len(labels), -1)
        held = np.zeros(len(labels), bool)
        for k, (name, idx) in enumerate(sets.items()):
            owner[idx] = k
            held[idx] = not name.endswith("_train")
        a, b = neighbours[:, 0], neighbours[:, 1]
        cut.append(int(np.sum((owner[a] != owner[b]) & (held[a] | held[b]))))
    return f"{len(multi)} | {multi.sum()} | {multi.max()} | {' / '.join(map(str, cut))} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("..") / "shared" / "data" / "brain-tumor-mri")
    parser.add_argument("--tasks", nargs="+", default=["meningioma", "glioma"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    for task in args.tasks:
        measure(args.data, task, args.seeds)


if __name__ == "__main__":
    main()
