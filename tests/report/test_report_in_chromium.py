"""The static HTML report opened in headless Chromium: every image it shows really loads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qualoader.report import build_report

#: Appended to a copy of the page: after ``load``, count the images and those that failed to decode.
_PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-broken", images.filter((image) => !(image.complete && image.naturalWidth > 0)).length);
});
</script>"""


def _chromium() -> str:
    """Path of Debian's chromium; skipped off CI when missing (``.ci/run`` installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium should be installed on CI by .ci/run (Debian package chromium)")
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    return found


def test_every_image_of_the_report_loads_in_chromium(tmp_path: Path, image_folder: Path) -> None:
    chromium = _chromium()
    index = build_report(image_folder, ["sharpness", "noise"], tmp_path / "report", examples=3)
    probed = index.with_name("probed.html")  # beside the page, so its relative links resolve the same
    probed.write_text(index.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
               "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken="(\d+)"', dom)
    assert images is not None and broken is not None, f"the load probe did not run; Chromium printed: {dom[:500]}"
    assert int(images.group(1)) >= 2 * 2 * 3, "thumbnails and plots should be on the page"
    assert int(broken.group(1)) == 0, f"{broken.group(1)} of {images.group(1)} images failed to load"
