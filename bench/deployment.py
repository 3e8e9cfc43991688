"""Figure 5: the Lambda code asset's size, and synth time against an empty CDK app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import FAKE_AWS, ROOT, median

_EMPTY_APP = (
    "import sys, aws_cdk as cdk; app = cdk.App(outdir=sys.argv[1]); "
    "cdk.Stack(app, 'Empty'); app.synth()"
)


def _timed(command: list[str], env: dict[str, str]) -> float:
    begun = time.perf_counter()
    subprocess.run(
        command, cwd=ROOT, env={**os.environ, **FAKE_AWS, **env}, check=True, capture_output=True
    )
    return time.perf_counter() - begun


def run(samples: int = 3) -> dict[str, Any]:
    from remediators.simulator.deploy import zip_directory

    ours, empty = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for index in range(samples):
            outdir = Path(workdir) / f"app-{index}"
            ours.append(_timed([sys.executable, "app.py"], {"CDK_OUTDIR": str(outdir)}))
            empty.append(
                _timed(
                    [sys.executable, "-c", _EMPTY_APP, str(Path(workdir) / f"empty-{index}")], {}
                )
            )
        asset = next(p for p in outdir.iterdir() if p.name.startswith("asset."))
        zipped = zip_directory(asset)
        files = [p for p in asset.rglob("*") if p.is_file()]
    return {
        "asset_zip_bytes": len(zipped),
        "asset_files": len(files),
        "synth_s": median(ours),
        "empty_app_synth_s": median(empty),
        "ratio": median(ours) / median(empty),
        "samples": samples,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
