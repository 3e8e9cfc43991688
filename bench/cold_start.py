"""Figure 1: cold start of each Lambda handler module against `import boto3; boto3.client()`.

Each sample is a fresh interpreter that times (in-process, perf_counter) the import of the
module and everything it builds at init, plus what the first event builds before any AWS
call (the policy file loaded and validated, the guardrails set up). Interpreter start-up is
the same for both and left out. Samples alternate baseline / handler so noise hits both alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import FAKE_AWS, ROOT, median

# Each entry point, with what its first event builds before any AWS call.
_SETTINGS = "from remediators.core.settings import Settings\n"
HANDLERS = {
    "remediators.handlers.alarm": (
        f"import remediators.handlers.alarm as h\n{_SETTINGS}h._remediator(Settings.from_env())"
    ),
    **{
        f"remediators.handlers.{kind}": (
            f"import remediators.handlers.{kind}\n"
            f"{_SETTINGS}from remediators.handlers.common import recorder\n"
            "recorder(Settings.from_env())"
        )
        for kind in ("verification", "flow_ended", "expiry")
    },
}
_ENVIRONMENT = {
    "AUDIT_TABLE_NAME": "audit",
    "LOCKS_TABLE_NAME": "locks",
    "IDEMPOTENCY_TABLE_NAME": "idempotency",
    "KILL_SWITCH_PARAMETER": "/autoremediate/Autoremediate/actions",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/scheduler",
    "NOTIFICATION_TOPICS": '{"ops": "arn:aws:sns:us-east-1:123456789012:ops"}',
    "VERIFIER_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:verifier",
}
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
    import remediators.actions  # noqa: F401
    from remediators.core.policy import load_policy_file

    results: dict[str, Any] = {"samples": samples, "handlers": {}}
    with tempfile.TemporaryDirectory() as workdir:
        # The policy as it travels in the code asset (validated, as JSON).
        policy = Path(workdir) / "policy.json"
        policy.write_text(
            load_policy_file(ROOT / "remediation.yaml").model_dump_json(exclude_none=True)
        )
        env = {**_ENVIRONMENT, "POLICY_PATH": str(policy)}
        for module, statement in HANDLERS.items():
            base, handler = [], []
            for _ in range(samples):
                base.append(_sample(BASELINE, {}))
                handler.append(_sample(statement, env))
            results["baseline_s"] = median(base)
            results["handlers"][module] = {
                "median_s": median(handler),
                "ratio": median(handler) / median(base),
                "goal": GOAL,
            }
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
