"""``fedsafe data``: check a data folder or file, download the public sources, and write a task's decoded table to
one file (``snapshot``) for a machine without the source images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from ..data.download import SOURCES, DownloadError, download
from ..data.medmnist import read_medmnist
from ..data.neardup import DEFAULT_HASH_DISTANCE, DEFAULT_THRESHOLD, NearDuplicateSettings
from ..data.pcam import PCAM_SPLITS
from ..data.snapshot import is_snapshot, load_snapshot
from ..data.tasks import TASKS, load_task
from ..data.types import DataReport
from .choices import OUTPUT, choice, output_dir, profile_choice
from .console import fail, out, progress_bars, usage_error
from .runtime import os_error_line

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

TOP_SIZES = 8
TOP_PAIRS = 6


def infer_task(path: Path) -> str:
    """Guess the task of a data path: an npz's set name, an MRI folder (all four classes), a PCam folder.

    Raises ValueError when the path is missing or its layout is not recognised.
    """
    if not path.exists():
        raise ValueError(f"path not found: {path}")
    if path.is_file():
        if path.suffix == ".npz":
            return re.sub(r"_\d+$", "", path.stem).lower()
        raise ValueError(f"{path}: cannot tell the task of this file; pass --task")
    if (path / "Training").is_dir() or (path / "Testing").is_dir():
        return "brain-tumor-4class"
    if any((path / f"camelyonpatch_level_2_split_{s}_x.h5").exists() for s in PCAM_SPLITS.values()):
        return "pcam"
    if (path / "breastmnist.npz").is_file():
        return "breastmnist"
    raise ValueError(f"{path}: not a known layout (MRI Training/Testing folders, PCam .h5 files, a MedMNIST npz); "
                     f"pass --task ({', '.join(TASKS)})")


def find_sites_csv(csv_path: Path, root: Path) -> Path:
    """The sites CSV ``--sites-csv`` names: absolute as given; relative, read from the image folder ``root`` as the
    config's ``task.sites_csv`` is, else from the current folder. Raises :func:`fail` when it is in neither."""
    if csv_path.is_absolute() or (root / csv_path).exists():
        return csv_path
    if csv_path.exists():
        return csv_path.resolve()
    raise fail(f"sites CSV not found: {csv_path} (looked in {root} and in the current folder)")


def _one_line(exc: BaseException) -> str:
    """The message on one line (:func:`fail` escapes rich markup: file names may hold brackets)."""
    return " ".join(str(exc).split())


@app.command()
def check(
    path: Path | None = typer.Argument(None, help="Data folder or file (not needed for --task synthetic)."),
    task: str | None = typer.Option(None, "--task", "-t",
                                    help=f"Task to read as ({', '.join(TASKS)}); guessed if absent."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first unreadable file instead of skipping it."),
    as_json: bool = typer.Option(False, "--json", help="Print the data report as JSON."),
    size: int = typer.Option(64, "--size", help="Square size images are resized to."),
    channels: int = typer.Option(1, "--channels", help="1 (grey) or 3 (RGB)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Decoded-image cache ($FEDSAFE_CACHE or "
                                   "~/.cache/fedsafe by default)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode without reading or writing the cache."),
    drop_conflicts: bool | None = typer.Option(None, "--drop-conflicts/--no-drop-conflicts",
                                        help="Drop duplicates that carry different labels (default: per task)."),
    max_per_split: int | None = typer.Option(None, "--max-per-split", help="Read at most N per official split "
                                      "(breastmnist, pcam)."),
    near_duplicates: bool = typer.Option(True, "--near-duplicates/--no-near-duplicates",
                                         help="Group near-duplicates (task.near_duplicates)."),
    near_threshold: float = typer.Option(DEFAULT_THRESHOLD, "--near-threshold", help="Mean |difference| in [0, 1] "
                                         "at 256x256 grey below which two images are near-duplicates."),
    near_hash_distance: int = typer.Option(DEFAULT_HASH_DISTANCE, "--near-hash-distance",
                                           help="pHash bits two candidate near-duplicates may differ in."),
    sites_csv: Path | None = typer.Option(None, "--sites-csv", metavar="FILE",
                                          help="image-folder: the CSV of file,site[,patient] (task.sites_csv; a "
                                               "relative path is read from PATH, else from here): report the sites "
                                               "and patients."),
) -> None:
    """Read a data set as the training code will, and report counts, sizes, duplicates, near-duplicates, slices
    of one scan (MRI), the groups the splits keep whole, the sites and patients of a sites CSV, and unreadable
    files. A snapshot (fedsafe data snapshot) shows the report it was made with."""
    if task is None and path is None:
        raise usage_error("give a PATH or --task synthetic")
    if sites_csv is not None:
        task = task or "image-folder"
        if task != "image-folder":
            raise usage_error(f"--sites-csv applies to --task image-folder, not {task!r}")
        if path is None:
            raise usage_error("--sites-csv needs the image folder: give its PATH")
        sites_csv = find_sites_csv(sites_csv, path)
    if path is not None and path.suffix == ".npz" and is_snapshot(path):  # a task's table, read as training will
        try:
            table, report = load_snapshot(path)
        except ValueError as exc:
            raise fail(_one_line(exc)) from None
        if task is not None and task != table.name:
            raise fail(f"{path} is a snapshot of task {table.name!r}, not {task!r}")
        _print_report(report, as_json)
        return
    try:
        if task is None:
            task = infer_task(path)
        near = NearDuplicateSettings(threshold=near_threshold, hash_distance=near_hash_distance)
        with progress_bars() as progress:
            if task in TASKS:
                _, report = load_task(task, data_root=path, image_size=size, channels=channels, cache_dir=cache_dir,
                                      strict=strict, progress=progress, max_per_split=max_per_split,
                                      drop_conflicts=drop_conflicts, use_cache=not no_cache,
                                      near_duplicates=near_duplicates, near_duplicate_threshold=near.threshold,
                                      near_duplicate_hash_distance=near.hash_distance, sites_csv=sites_csv)
            elif path is not None and path.suffix == ".npz":
                _, report = read_medmnist(path, size=size, channels=channels, name=task, max_per_split=max_per_split,
                                          drop_conflicts=bool(drop_conflicts), progress=progress,
                                          near_duplicates=near if near_duplicates else None)
            else:
                raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    except ValueError as exc:
        raise fail(_one_line(exc)) from None
    _print_report(report, as_json)


def _print_report(report: DataReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        show_report(report)


def show_report(report: DataReport) -> None:
    """Print a DataReport as rich tables."""
    header = Text(report.task, style="bold")
    header.append(" (")
    header.append("synthetic", style="bold yellow") if report.synthetic else header.append("real")
    header.append(f") from {report.source}")
    out.print(header)
    splits = list(report.counts)
    classes = list(report.kept) or sorted({c for per in report.counts.values() for c in per})
    counts = Table(title="Images per class and split (files read; kept after de-duplication and decoding)")
    counts.add_column("class")
    for split in splits:
        counts.add_column(split, justify="right")
    counts.add_column("total read", justify="right")
    counts.add_column("kept", justify="right", style="bold")
    for cls in classes:
        row = [report.counts[s].get(cls, 0) for s in splits]
        counts.add_row(Text(cls), *map(str, row), str(sum(row)), str(report.kept.get(cls, 0)))
    totals = [sum(report.counts[s].values()) for s in splits]
    counts.add_row("[bold]all[/]", *map(str, totals), str(sum(totals)), str(sum(report.kept.values())))
    out.print(counts)

    sizes = Table(title=f"Source image sizes ({len(report.sizes)} distinct)")
    sizes.add_column("W x H")
    sizes.add_column("images", justify="right")
    ranked = sorted(report.sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    for size, n in ranked[:TOP_SIZES]:
        sizes.add_row(size, str(n))
    if len(ranked) > TOP_SIZES:
        sizes.add_row(f"... {len(ranked) - TOP_SIZES} other sizes", str(sum(n for _, n in ranked[TOP_SIZES:])))
    out.print(sizes)

    if report.duplicates:
        dup = Table(title="Exact duplicates")
        dup.add_column("count of")
        dup.add_column("n", justify="right")
        for key, n in report.duplicates.items():
            dup.add_row(key.replace("_", " "), str(n))
        out.print(dup)
    show_near_duplicates(report.near_duplicates)
    if report.unreadable:
        bad = Table(title=f"Unreadable files ({len(report.unreadable)}, skipped)")
        bad.add_column("file", overflow="fold")
        bad.add_column("error", overflow="fold")
        for item in report.unreadable:
            bad.add_row(Text(item["file"]), Text(item["error"]))
        out.print(bad)
    else:
        out.print("unreadable files: none")
    if report.sites:
        show_sites(report.sites, report.source)
    if report.preprocessing:
        out.print(Text("preprocessing: " + ", ".join(f"{k}={v}" for k, v in report.preprocessing.items())))
    for note in report.notes:
        out.print(Text(f"note: {note}"))


def show_sites(sites: dict, source: str) -> None:
    """Print the sites of a sites CSV (``DataReport.sites``) of the image folder ``source``: images per site and
    class, its patients; the patient groups; and the settings that partition a federation by these sites (the
    CSV's path as ``task.sites_csv`` reads it: from the data root)."""
    per = sites["sites"]
    classes = list(next(iter(per.values()))["classes"]) if per else []
    tab = Table(title=Text(f"Images per site and class (sites CSV {sites['csv']}; client i = the i-th site)"))
    tab.add_column("site")
    for cls in classes:
        tab.add_column(Text(cls), justify="right")
    for col in ("images", "patients", "no patient"):
        tab.add_column(col, justify="right")
    for name, site in per.items():
        tab.add_row(Text(name), *(str(site["classes"][c]) for c in classes), str(site["images"]),
                    str(site["patients"]), str(site["images_without_patient"]))
    out.print(tab)
    text = (f"patient groups: {sites['patients']} patient(s) named (at most {sites['largest_patient']} image(s) "
            f"each), each kept in one set; {sites['split_groups']} split groups after joining patients and "
            "near-duplicates")
    if sites.get("patient_ids_at_two_sites"):
        text += (f"; {sites['patient_ids_at_two_sites']} patient id(s) named at two or more sites, counted as one "
                 "patient a site")
    if sites.get("unused_rows"):
        text += f"; {sites['unused_rows']} row(s) for unreadable or duplicate files unused"
    out.print(Text(text))
    csv_path, root = Path(sites["csv"]), Path(source)
    setting = csv_path.relative_to(root) if csv_path.is_relative_to(root) else csv_path.resolve()
    out.print(Text(f"partition by site: --set task.sites_csv={setting} --set splits.partition=sites "
                   f"--set splits.num_clients={len(per)}"), soft_wrap=True)


def show_near_duplicates(near: dict[str, object]) -> None:
    """Print the near-duplicate counts of a DataReport, the same-scan pairs, the split groups and a few example
    pairs of each kind."""
    if not near:
        return
    if not near.get("computed"):
        out.print(Text(f"near-duplicates: not searched ({near.get('note', 'no grouping')})"))
        return
    out.print(Text(f"near-duplicates: {near.get('method', '')}"))
    _show_counts("Near-duplicates (re-encoded copies)", near)
    _show_pairs("Example near-duplicate pairs (smallest to largest difference)", near)
    scan = near.get("same_scan")
    if isinstance(scan, dict) and scan.get("computed"):
        out.print(Text(f"same scan (adjacent slices): {scan.get('method', '')}"))
        _show_counts("Same-scan pairs", scan)
        _show_pairs("Example same-scan pairs, not re-encoded copies (smallest to largest difference)", scan)
    groups = near.get("split_groups")
    if isinstance(groups, dict):
        out.print(Text("split groups: near-duplicates and same-scan slices joined; each group stays in one split"))
        _show_counts("Split groups", groups)


def _show_counts(title: str, counts_of: dict[str, object]) -> None:
    counts = Table(title=title)
    counts.add_column("count of")
    counts.add_column("n", justify="right")
    for key in ("groups", "images_in_groups", "mixed_label_groups", "largest_group", "candidate_pairs",
                "confirmed_pairs", "pairs_beyond_near_duplicates"):
        if key in counts_of:
            counts.add_row(key.replace("_", " "), str(counts_of[key]))
    out.print(counts)


def _show_pairs(title: str, found: dict[str, object]) -> None:
    examples = list(found.get("examples") or [])[:TOP_PAIRS]
    if not examples:
        return
    pairs = Table(title=title)
    pairs.add_column("image", overflow="fold")
    pairs.add_column("paired with", overflow="fold")
    pairs.add_column("mean |diff|", justify="right")
    pairs.add_column("pHash bits", justify="right")
    for e in examples:
        pairs.add_row(Text(str(e["a"])), Text(str(e["b"])), f"{float(e['difference']):.4f}", str(e["hash_distance"]))
    out.print(pairs)


@app.command("download")
def download_cmd(
    name: str = typer.Argument(..., help=f"One of: {', '.join(SOURCES)}."),
    to: Path = typer.Option(Path("data"), *OUTPUT, "--to", click_type=output_dir(),
                            help="The folder to put the data set in (as a sub-folder named after it)."),
    base_url: str | None = typer.Option(None, "--base-url", envvar="FEDSAFE_DOWNLOAD_BASE",
                                 help="Replace the source's base URL (a mirror, or a local server in tests)."),
    commit: str | None = typer.Option(None, "--commit", help="brain-tumor-mri: download this commit's archive "
                               "(e.g. 3ea9f4eae54c67e5bddbf6f7a73582967a5f5f79) instead of master."),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected sha256 of the downloaded file."),
    force: bool = typer.Option(False, "--force", help="Replace data already in place."),
    timeout: float = typer.Option(60.0, "--timeout", help="Network timeout in seconds."),
) -> None:
    """Download a public data set, check its content, and put it in place (nothing is left on failure)."""
    try:
        with progress_bars() as progress:
            result = download(name, to=to, base_url=base_url, commit=commit, expected_sha256=sha256, force=force,
                              progress=progress, timeout=timeout)
    except (ValueError, DownloadError) as exc:
        raise fail(_one_line(exc)) from None
    out.print(Text.assemble(("ok", "bold green"), f" {result.name} -> {result.path}"))
    out.print(Text(f"url: {result.url}\nsha256: {result.sha256}\nmd5: {result.md5}"))
    for line in result.checks:
        out.print(Text(f"check: {line}"))


@app.command("snapshot")
def snapshot_cmd(
    file: Path = typer.Argument(..., help="The .npz file to write (replaced if it exists)."),
    task: str | None = typer.Option(None, "--task", "-t", click_type=choice(TASKS),
                                    help="Shortcut for --set task.name=..."),
    profile: str | None = typer.Option(None, "--profile", "-p", click_type=profile_choice(),
                                       help="The shipped profile whose task settings to use (default: cpu)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (over the profile)."),
    data_root: str | None = typer.Option(None, "--data-root", help="Shortcut for --set task.data_root=..."),
    set_: list[str] = typer.Option([], "--set", "-s", help="key=value overrides, e.g. task.image_size=128"),
) -> None:
    """Write a task's decoded table (images at the task's size, labels, ids, split groups, data report) to one file,
    so a machine without the source images can train on it: `--set task.snapshot=FILE` there gives the same
    splits and the same cached runs."""
    from ..build import load_table
    from ..config import ConfigError, load_config
    from ..data.snapshot import save_snapshot, snapshot_settings

    if file.suffix != ".npz":
        raise usage_error(f"{file}: a snapshot is an .npz file: give FILE.npz")
    if file.is_dir():
        raise usage_error(f"{file} is a folder: give the snapshot's file name")
    overrides = [*set_, *([f"task.name={task}"] if task else []), *([f"task.data_root={data_root}"] if data_root
                                                                    else [])]
    try:
        cfg = load_config(config, profile=profile, overrides=overrides)
        with progress_bars() as progress:
            table, report = load_table(cfg, progress=progress)
        save_snapshot(file, table, report, snapshot_settings(cfg.task, seed=cfg.seed))
    except (ConfigError, ValueError) as exc:
        raise fail(_one_line(exc)) from None
    except OSError as exc:
        raise fail(os_error_line(exc)) from None
    n, h, w, c = table.images.shape
    groups = len(np.unique(table.groups))
    out.print(Text(f"wrote {file}: task {table.name}, {n} images of {h}x{w}x{c}, {groups} split groups, "
                   f"{file.stat().st_size / 2**20:.1f} MiB"))
    out.print(Text(f"train from it where the source images are not: --set task.snapshot={file}"))
