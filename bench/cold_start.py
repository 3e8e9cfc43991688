"""Figure 1: cold start of each Lambda handler module against `import boto3; boto3.client()`.

Each sample is a fresh interpreter that times (in-process, perf_counter) the import of the
module and everything it builds at init. Interpreter start-up is the same for both and left
out. Samples alternate baseline / handler so machine noise hits both alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench.common import FAKE_AWS, ROOT, median

HANDLERS = {"remediators.handlers.remediator": {"IDEMPOTENCY_TABLE_NAME": "idempotency"}}
BASELINE = "import boto3; boto3.client('dynamodb')"
GOAL = 1.3

_PROBE = """
import sys, time
t = time.perf_counter()
exec(sys.argv[1])
print(time.perf_counter() - t)
"""


def _sample(statement: str, env: dict[str, str]) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, statement],
        env={**os.environ, **FAKE_AWS, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def run(samples: int = 15) -> dict[str, Any]:
    results: dict[str, Any] = {"samples": samples, "handlers": {}}
    for module, env in HANDLERS.items():
        base, handler = [], []
        for _ in range(samples):
            base.append(_sample(BASELINE, {}))
            handler.append(_sample(f"import {module}", env))
        results["baseline_s"] = median(base)
        results["handlers"][module] = {
            "median_s": median(handler),
            "ratio": median(handler) / median(base),
            "goal": GOAL,
        }
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
