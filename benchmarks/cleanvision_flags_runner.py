"""Run CleanVision's per-image checks on a folder and print which images each check flags, as JSON.

Called by ``flags_vs_cleanvision.py`` with the Python of an environment that has CleanVision
(``--cleanvision-python``), so CleanVision never has to be installed beside qualoader. Imports
nothing of qualoader. Usage: ``python cleanvision_flags_runner.py FOLDER``; stdout: ``{"seconds": s,
"issues": [...], "flagged": {file name: [issue, ...]}}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path

#: CleanVision's checks that judge one image on its own (duplicates compare images with each other, which is not what is measured here).
ISSUES = ("blurry", "dark", "light", "low_information", "grayscale", "odd_aspect_ratio", "odd_size")


def main() -> None:
    from cleanvision import Imagelab

    folder = Path(sys.argv[1])
    logging.disable(logging.WARNING)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = Imagelab(data_path=str(folder), verbose=False)
        lab.find_issues(issue_types={name: {} for name in ISSUES}, n_jobs=1, verbose=False)
    seconds = time.perf_counter() - start
    flagged: dict[str, list[str]] = {}
    for path, row in lab.issues.iterrows():
        flagged[Path(str(path)).name] = [name for name in ISSUES if bool(row.get(f"is_{name}_issue", False))]
    json.dump({"seconds": seconds, "issues": list(ISSUES), "flagged": flagged}, sys.stdout)


if __name__ == "__main__":
    main()
