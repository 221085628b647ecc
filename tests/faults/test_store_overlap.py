"""Two ``precompute`` processes fill one store while the folder's files change under them (rewritten, swapped
keeping size and mtime): no cell is ever vouched for by a version it was not computed from, and one rerun
leaves every score equal to a fresh one."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from qualoader.data import ScoreStore, precompute
from qualoader.data._provenance import file_digest
from qualoader.data._samples import image_to_tensor
from qualoader.metrics import create_metric

# sharpness under its own name and config (the same table), slowed down so that the two runs overlap for seconds
_RUNNER = textwrap.dedent(
    """
    import sys, time
    from torchvision.datasets import ImageFolder
    from qualoader.data import precompute
    from qualoader.metrics import QualityMetric, create_metric

    class Slow(QualityMetric):
        def __init__(self):
            super().__init__()
            self.inner = create_metric("sharpness")
            self.name = self.inner.name
        def get_config(self):
            return self.inner.get_config()
        def score(self, images, reference=None):
            time.sleep(0.15)
            return self.inner.score(images)

    print("ready", flush=True)
    for _ in range(int(sys.argv[4])):
        precompute(ImageFolder(sys.argv[1]), Slow(), sys.argv[2], batch_size=4, progress=False, num_workers=int(sys.argv[3]))
    print("done", flush=True)
    """
)


def _versions(photos: torch.Tensor, count: int) -> list[bytes]:
    """BMP bytes of ``count`` different 24x24 crops: all the same size, so any of them can replace any file."""
    out = []
    for k in range(count):
        crop = photos[k % len(photos), :, 3 + k : 27 + k, 7:31]
        buffer = BytesIO()
        Image.fromarray((crop.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()).save(buffer, format="BMP")
        out.append(buffer.getvalue())
    return out


@pytest.mark.slow
def test_overlapping_runs_while_files_change_leave_no_stale_cell(tmp_path: Path, photos: torch.Tensor) -> None:
    versions = _versions(photos, 30)
    files = []
    for k in range(24):
        path = tmp_path / "images" / ("a" if k % 2 == 0 else "b") / f"{k:02d}.bmp"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(versions[k])
        files.append(path)
    files = sorted(files)
    store = tmp_path / "s"
    runners = [
        subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(tmp_path / "images"), str(store), str(workers), "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for workers in (0, 1)
    ]
    chooser = random.Random(0)  # seeded: the same edits every run
    edits = 0
    try:
        for runner in runners:
            assert runner.stdout is not None and runner.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and all(r.poll() is None for r in runners):  # edits while both runs score
            target = files[chooser.randrange(len(files))]
            data = versions[chooser.randrange(len(versions))]
            # replaced whole (a temporary file renamed over it), so a reader sees one version or the other, never half
            temp = target.with_name(".edit.tmp")
            temp.write_bytes(data)
            if chooser.random() < 0.5:  # keep size and mtime (exiftool -P, an archive, a swap)
                status = target.stat()
                os.utime(temp, ns=(status.st_atime_ns, status.st_mtime_ns))
            os.replace(temp, target)
            edits += 1
            time.sleep(0.02)
        outputs = [r.communicate(timeout=300) for r in runners]
    finally:
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
    for runner, (out, err) in zip(runners, outputs):
        assert runner.returncode == 0 and "done" in out, err
    assert edits > 20
    metric = create_metric("sharpness")
    fresh = np.array([float(metric(image_to_tensor(Image.open(f).convert("RGB"))[None])[0]) for f in files])
    opened = ScoreStore(store)
    table = opened.table(metric)
    records = opened.provenance.records()
    scores, scored = table.scores(), table.scored()
    for index, path in enumerate(files):
        version = file_digest(path)
        assert version is not None
        # every stored cell is vouched for by the digest of the bytes it was computed from
        assert not scored[index] or bytes(records["digest"][index]) != bytes(16), index
        if scored[index] and bytes(records["digest"][index]) == version.digest:
            # and a cell vouched for by these bytes holds these bytes' score
            assert np.isclose(scores[index], fresh[index], rtol=1e-5), index
    del records
    # one rerun (files no longer changing) leaves every score fresh (its check of the bytes finds the edits that kept size and mtime)
    final = precompute(ImageFolder(str(tmp_path / "images")), metric, store, progress=False)
    assert final.complete and np.allclose(final.scores(), fresh, rtol=1e-5, atol=0)
