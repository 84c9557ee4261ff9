"""Open the MLflow UI over a finished sweep in headless Chromium: check the trials are listed, and save a
screenshot of the runs compared side by side (the picture in README.md).

    python scripts/ui_screenshot.py SWEEP.yaml [--out docs/mlflow-compare.png]

Needs Debian's `chromium` (apt-get install chromium). Starts its own `mlflow server` on a free loopback
port over the sweep's tracking store, and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from pipeline import stores
from pipeline.processes import mlflow_server
from pipeline.config import load_sweep

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1600,1000", "--virtual-time-budget=20000"]


def chromium(url: str, *flags: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, url],
                                capture_output=True, text=True, timeout=180)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_file")
    parser.add_argument("--out", type=Path, default=Path("docs/mlflow-compare.png"))
    args = parser.parse_args()
    config = load_sweep(args.sweep_file)
    uri = stores.resolve_uri(config.tracking.tracking_uri, create=False)
    with mlflow_server(uri, "--workers", "1") as base:
        experiment = json.load(urllib.request.urlopen(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={config.experiment_name}"))["experiment"]
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"experiment_ids": [experiment["experiment_id"]],
                                                          "filter": "tags.`sweep.role` = 'trial'"}).encode())
        runs = json.load(urllib.request.urlopen(request))["runs"]
        names = [r["info"]["run_name"] for r in runs]
        query = urllib.parse.urlencode({"runs": json.dumps([r["info"]["run_id"] for r in runs]),
                                        "experiments": json.dumps([experiment["experiment_id"]])})
        compare = f"{base}/#/compare-runs?{query}"
        page = chromium(compare, "--dump-dom")
        missing = [name for name in names if name not in page]
        print(f"the UI's compare view lists {len(names) - len(missing)} of {len(names)} trial runs"
              + (f"; missing: {missing}" if missing else ""))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        chromium(compare, f"--screenshot={args.out.resolve()}")
        print(f"wrote {args.out}")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
