"""``qualoader precompute``: score a dataset once into a score store (resumable), then summarise it.

SOURCE is ``fashion-mnist[:train|test]`` (the full local copy, else the bundled sample; or
``--split``) or a folder of images: laid out for torchvision's ``ImageFolder`` (``root/<class>/<image>``),
or flat (images directly in it, then every image under it is scored). Images keep their size unless ``--size``
resizes them (variable sizes are scored per size group). The store (``--store``) is keyed by
sample index and records the dataset: for a folder, every file's relative path, size and
modification time; for Fashion-MNIST, the split, limit and size. Re-running resumes an
interrupted pass (Ctrl-C, SIGTERM or kill -9 lose at most the batch being scored); files rewritten
since the last run are rescored; a store built for other images is refused. An unreadable image
stops the pass with an error naming its file, or with ``--on-error skip`` is recorded as skipped
(NaN score) and listed in the summary. Read the scores back with ``qualoader export`` or
``qualoader.data.store_to_pandas(ScoreStore(STORE))``.

A head start: on a first run over a folder (no store yet), one process decodes the images while
torch is being imported (about a second), and the images it reached are scored first, on every
core, before the ``--num-workers`` workers start; ``QUALOADER_HEAD_START=0`` turns it off.

Several metrics (``--metric sharpness,noise``, a suite such as ``--metric classical``, repeated
``--metric`` and ``--profile`` options) are scored from one decode of each image, into one table
per metric of the same store. The store must not be, contain or lie inside the image folder (it
would be read as images next time) or the ``--calibration`` and ``--profile`` files.

The summary shows, per metric, the score quantiles and histogram, the difficulty buckets (from the
metric's current calibration), for an aligned metric how much of the dataset lies far outside
its reference network's input domain (counted on the images, on at most 10000 evenly spaced ones), and
one line per weak profile in use ("profile X is weak: <reason>", the rule of ``profile show``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qualoader.cli._errors import WRITE_ERRNOS, UserError, check_outputs, user_errors, write_error
from qualoader.cli._profiles import add_profile_argument, cli_metrics
from qualoader.cli._shard_commands import _raise_terminated, _Terminated
from qualoader.cli._sources import parse_source

if TYPE_CHECKING:  # pragma: no cover
    from qualoader.cli._head_start import HeadStart
    from qualoader.data.precompute import PrefetchedImage

__all__ = ["add_parser", "run"]

#: The largest --size: 4096 x 4096 x 3 float32 is 200 MB per image, already a lot for one batch.
MAX_SIZE = 4096
#: The summary's domain figures count at most this many images, evenly spaced over the dataset: the fraction
#: to about 1%, without decoding a large folder a second time in full once the scoring pass is done.
_DOMAIN_IMAGES = 10_000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "precompute",
        help="score every image of a dataset into a persistent score store (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", metavar="SOURCE", help="fashion-mnist[:train|test] or a folder of images (flat, or root/<class>/<image>)"
    )
    parser.add_argument("--store", required=True, type=Path, help="score store folder (created when missing)")
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        help="no-reference metric(s): sharpness, a,b,c or a suite such as classical (repeatable; or give --profile)",
    )
    add_profile_argument(parser, repeat=True)
    parser.add_argument(
        "--split", choices=("train", "test"), default=None, help="Fashion-MNIST split (default: test, or the one in SOURCE)"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples")
    parser.add_argument("--size", type=int, default=None, help=f"resize images to SIZE x SIZE before scoring (at most {MAX_SIZE})")
    parser.add_argument(
        "--calibration", type=Path, default=None, help="DifficultyCalibration JSON to attach (difficulty buckets in the summary)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per metric call (default: 64)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for decoding (default: 0)")
    parser.add_argument("--device", default="cpu", help="device to score on (default: cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for scoring on the CPU (default: the CPU cores this process may use, less --num-workers, "
                        "at least 1: the decoding workers need cores too; OMP_NUM_THREADS, when set, is kept)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="unreadable image: stop with an error naming the file (raise, default) or record it as skipped (skip)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--trust-mtime", action="store_true",
                        help="do not re-read already-scored files: trust an unchanged size and modification time "
                        "(default: their bytes are hashed, so edits that keep both are rescored)")
    parser.set_defaults(func=run, before_torch=_start_head_start)


def _dataset(args: argparse.Namespace) -> tuple[object, str]:
    """The dataset to score and its label for the store (what the store's identity cannot see)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import Subset, TensorDataset

    from qualoader.datasets import fashion_mnist_digest, load_fashion_mnist

    source = parse_source(args.source, kinds=("fashion-mnist", "folder"))
    if source.kind == "fashion-mnist":
        split = source.resolved_split(args.split)
        images, labels = load_fashion_mnist(split)
        if args.limit is not None:
            images, labels = images[: args.limit], labels[: args.limit]
        if args.size is not None:
            resized = F.interpolate(images.float(), size=(args.size, args.size), mode="bilinear", align_corners=False)
            images = resized.round().clamp(0, 255).to(torch.uint8)
        # the source's digest: another copy under the same split and limit is another dataset, never scored as this one
        return TensorDataset(images, labels), f"fashion-mnist:{split}:n={len(images)}:size={args.size}:src={fashion_mnist_digest(split)}"
    from qualoader.cli._image_folder import ImageFiles, Resize
    from qualoader.decoding import load_image  # the one decoder: 16-bit, palette, EXIF as on every other path

    resize = Resize(args.size) if args.size is not None else None
    # the head start's listing when there is one: its images are indexed by it
    dataset = ImageFiles(str(source.folder), transform=resize, loader=load_image, listing=getattr(args, "listing", None))
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    # the files themselves are identified by the store's manifest (paths relative to the root, so the
    # folder may move); the label records what the manifest cannot see: the resize
    return dataset, f"imagefolder:size={args.size}"


def _start_head_start(args: argparse.Namespace) -> HeadStart | None:
    """On a first run over a folder, start decoding its images before torch is imported (:mod:`qualoader.cli._head_start`).

    Sets ``args.head_start`` (``None`` where it would not help: another source, an existing store, a
    bad option that ``run`` reports, one core, torch already imported) and ``args.listing`` (the
    folder's listing, which the dataset reuses), and returns the head start for ``main`` to close.
    """
    from qualoader.cli._head_start import HeadStart, can_start
    from qualoader.cli._image_folder import image_samples

    args.head_start, args.listing = None, None
    if not can_start() or args.store.exists() or (args.limit is not None and args.limit <= 0):
        return None
    try:
        source = parse_source(args.source, kinds=("fashion-mnist", "folder"))
        if source.kind != "folder":
            return None
        listing = image_samples(str(source.folder))
    except (UserError, OSError):
        return None  # run() lists the folder again and reports the problem
    try:
        args.head_start = HeadStart([path for path, _ in listing[1]][: args.limit])
    except OSError:  # no fork or memory to spare (a process limit, say): the usual pass reads every image
        return None
    args.listing = listing
    return args.head_start


def _prefetched(head_start: HeadStart | None, dataset: Any) -> dict[int, PrefetchedImage]:
    """The head start's images as ``{index: PrefetchedImage}`` (the dataset's transform applied), after stopping it."""
    import torch

    from qualoader.data.precompute import PrefetchedImage

    if head_start is None:
        return {}
    decoded = head_start.collect()
    transform = getattr(getattr(dataset, "dataset", dataset), "transform", None)  # ImageFiles, inside a --limit Subset or not
    images = {}
    for item in decoded:
        image = torch.from_numpy(item.pixels)
        images[item.index] = PrefetchedImage(transform(image) if transform is not None else image, item.version)
    return images


class _ReadableImages:
    """The dataset's images, batch by batch, read afresh on each iteration, for the summary's domain figures.

    Read the way the scoring pass read them (the same decoder, ``--num-workers`` workers, unreadable
    files left out as ``--on-error skip`` recorded them); ``describe`` iterates once per distinct
    reference domain, so this is an iterable, not a one-shot generator.
    """

    def __init__(self, dataset: Any, batch_size: int, num_workers: int) -> None:
        import numpy as np

        length = len(dataset)
        spaced = np.unique(np.linspace(0, length - 1, _DOMAIN_IMAGES).round().astype(np.int64)) if length > _DOMAIN_IMAGES else None
        self.dataset = dataset
        self.indices: list[int] = list(range(length)) if spaced is None else spaced.tolist()
        self.batch_size = batch_size
        self.num_workers = num_workers

    def __iter__(self) -> Iterator[Any]:
        from torch.utils.data import DataLoader

        from qualoader.data.precompute import _IndexedImages, collate_indexed_images

        loader = DataLoader(
            _IndexedImages(self.dataset, None, True),
            batch_size=self.batch_size,
            sampler=self.indices,
            num_workers=self.num_workers,
            collate_fn=collate_indexed_images,
        )
        for _, images, _ in loader:
            if isinstance(images, list):  # sizes differ within the batch: one image at a time
                yield from images
            else:
                yield images


def _summary(store: Any, tables: dict[str, Any], metrics: list[Any], dataset: Any, args: argparse.Namespace) -> str:
    """``describe`` of this run's tables: difficulty from the metrics' current calibration, and each aligned metric's domain line."""
    from qualoader.data import StoreSummary, describe

    aligned = any(getattr(metric, "input_domain", None) is not None for metric in metrics)
    images = _ReadableImages(dataset, args.batch_size, args.num_workers) if aligned else None
    summary = describe(store, metrics=metrics, dataset=images)
    by_fingerprint = {entry.fingerprint: entry for entry in summary.metrics}  # the store may hold tables of earlier runs too
    return str(StoreSummary(summary.root, summary.length, tuple(by_fingerprint[table.fingerprint] for table in tables.values())))


def _weak_profile_lines(metrics: list[Any]) -> list[str]:
    """One line per metric whose quality profile (``--profile`` or a shipped default) is weak, saying why.

    The rule is :func:`qualoader.profiles.weak_reason` (the one ``profile show`` and loading use); a
    metric whose calibration was replaced (``--calibration``) is the caller's to leave out.
    """
    from qualoader.profiles import weak_reason

    lines = []
    for metric in metrics:
        profile = getattr(metric, "profile", None)
        reason = None if profile is None else weak_reason(profile)
        if reason is not None:  # repr: a received profile's name may hold terminal escape sequences
            lines.append(
                f"profile {profile.name!r} ({metric.name}) is weak: {reason}; its difficulty may rank images no better than chance"
            )
    return lines


def run(args: argparse.Namespace) -> int:
    from qualoader._validation import check_positive_int
    from qualoader.data import SampleLoadError, ScoreStore, identify_dataset, precompute
    from qualoader.profiles import DomainError

    with user_errors():
        for name in ("limit", "size", "batch_size"):
            if getattr(args, name) is not None:
                check_positive_int(getattr(args, name), f"--{name.replace('_', '-')}")
        if args.size is not None and args.size > MAX_SIZE:
            raise UserError(
                f"--size should be at most {MAX_SIZE} (pixels per side; larger images do not fit in memory), but got --size={args.size}"
            )
        check_positive_int(args.num_workers, "--num-workers", allow_zero=True)
        if args.threads is not None:
            check_positive_int(args.threads, "--threads")
        source = parse_source(args.source, kinds=("fashion-mnist", "folder"))
        inputs = [("SOURCE", source.folder), ("--calibration", args.calibration), *(("--profile", p) for p in args.profile)]
        check_outputs(args.store, "--store", inputs)
        metrics = cli_metrics(
            args.metric, args.profile, device=args.device, strict=args.strict, downscale=args.downscale, trust=args.trust_profile
        )
        if args.calibration is not None and len(metrics) != 1:
            names = ", ".join(m.name for m in metrics)
            raise UserError(f"--calibration should come with one metric, but got {len(metrics)} metrics ({names})")
        dataset, dataset_id = _dataset(args)
        if args.calibration is not None:
            from qualoader.calibration import DifficultyCalibration

            metrics[0].calibration = DifficultyCalibration.load(args.calibration)
    # SIGTERM unwinds like Ctrl-C: one line and exit 143/130 (every finished batch is already stored)
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if threading.current_thread() is threading.main_thread() else None
    try:
        with user_errors():  # a store of other data (StoreError is a ValueError) is the user's to fix
            store = ScoreStore(args.store, dataset_id=dataset_id, identity=identify_dataset(dataset, dataset_id=dataset_id))
        if store.rescored.size:
            print(
                f"{store.rescored.size} sample(s) changed since the last run (file size or modification time): "
                "their scores were dropped and are rescored"
            )
        tables = precompute(
            dataset,  # type: ignore[arg-type]
            store=store,
            metrics=metrics,  # one decode pass fills one table per metric
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            progress=not args.no_progress,
            on_error=args.on_error,
            dataset_id=dataset_id,
            trust_mtime=args.trust_mtime,
            prefetched=_prefetched(getattr(args, "head_start", None), dataset),
            # scoring gets the cores the decoding workers leave; precompute sets torch's threads and restores them
            threads="auto" if args.threads is None else args.threads,
        )
    except DomainError as error:  # --strict: images outside the aligned metric's domain are the user's to fix
        raise UserError(str(error)) from error
    except SampleLoadError as error:
        # from a worker, the message is the worker's traceback: its last line is the error itself
        message = str(error).strip().splitlines()[-1].removeprefix(f"{type(error).__module__}.{type(error).__name__}: ")
        raise UserError(f"{message} (pass --on-error skip to record unreadable images as skipped)") from error
    except OSError as error:
        if error.errno not in WRITE_ERRNOS or isinstance(error, BrokenPipeError):
            raise
        raise write_error(error, "--store", args.store) from error
    except (KeyboardInterrupt, _Terminated) as error:
        name, code = ("SIGTERM", 143) if isinstance(error, _Terminated) else ("SIGINT", 130)
        print(f"qualoader precompute: interrupted by {name}; the scores of every finished batch are stored: "
              "run the same command again to resume",
              file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    assert isinstance(tables, dict)
    skipped: dict[int, str] = {}
    for table in tables.values():
        skipped.update(table.skipped())
        print(f"scores: {table.path} ({table.num_scored}/{table.length} scored, {table.num_skipped} skipped)")
    for index, reason in sorted(skipped.items()):  # the same unreadable files for every metric: listed once
        print(f"skipped {index}: {reason}")
    print(_summary(store, tables, metrics, dataset, args))
    # --calibration replaces the one metric's calibration: its profile's held-out fit no longer describes it
    for line in _weak_profile_lines(metrics if args.calibration is None else metrics[1:]):
        print(line)
    return 0
