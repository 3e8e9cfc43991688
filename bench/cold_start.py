"""Figure 1: cold start of each deployed Lambda handler against `import boto3; boto3.client()`.

What runs is what is deployed: the stack is synthesized from remediation.yaml and deployed on
moto through CloudFormation; each function's handler, resolved environment and code asset are
read back from Lambda. Each sample is a fresh interpreter laid out as the function's
execution environment is: `python -S` (no site-packages of this venv, whose hundreds of
packages pydantic's plugin lookup would scan) with only the code asset, and the packages the
runtime and the Powertools layer provide (boto3 and its dependencies; Powertools, pydantic
and theirs: DESIGN.md, "Lambda dependencies"), on the path. The sample times (perf_counter,
in-process) the import of the handler module and what its first event builds before its
first AWS call (`FIRST_EVENT`); interpreter start-up is the same for both and left out. The
baseline runs in the same layout. Samples alternate baseline / handler so noise hits both
alike.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import FAKE_AWS, ROOT, median

BASELINE = "import boto3; boto3.client('dynamodb')"
# The baseline and pydantic (imported, one model built): what any handler that validates
# with pydantic starts from.
WITH_PYDANTIC = (
    f"{BASELINE}\nfrom pydantic import BaseModel\nclass M(BaseModel):\n    a: int\nM(a=1)"
)
GOAL = 1.3
# The handler whose goal it is; the others are measured the same way and shown.
GOAL_HANDLER = "remediators.handlers.alarm.lambda_handler"

# What the first event of each entry point builds before its first AWS call, after the module
# is imported. The alarm handler's: the remediator (the policy file's top level), then the
# policy that answers the event's alarm, which loads that policy's action module
# (`ALARM` is the alarm of the policy file's first policy).
_SETTINGS = "from remediators.core.settings import Settings\n"
_RECORDER = (
    f"{_SETTINGS}from remediators.handlers.common import recorder\nrecorder(Settings.from_env())"
)
FIRST_EVENT = {
    "remediators.handlers.alarm": (
        f"{_SETTINGS}m._remediator(Settings.from_env()).policies.policy_for_alarm(ALARM)"
    ),
    "remediators.handlers.verification": _RECORDER,
    "remediators.handlers.flow_ended": _RECORDER,
    "remediators.handlers.expiry": _RECORDER,
    "remediators.handlers.approval_endpoint": "m._store()",
    "remediators.flows.approval": f"{_SETTINGS}m._remediator(Settings.from_env())",
    "remediators.flows.restore": (
        f"{_SETTINGS}m._policies(str(Settings.from_env().policy_path))"
        ".policies_running('dynamodb.restore_from_backup')"
    ),
}
# The runtime's and the Powertools layer's packages (import names; their distributions'
# metadata is linked too).
_PACKAGES = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "dateutil",
    "six",
    "aws_lambda_powertools",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_extensions",
    "typing_inspection",
)

_PROBE = """
import sys, time
t = time.perf_counter()
exec(sys.argv[1])
print(time.perf_counter() - t)
"""


def deployed_functions() -> tuple[dict[str, dict[str, Any]], str]:
    """Per handler (`module.function`): its resolved environment and code asset directory, as
    Lambda reports them after a CloudFormation deploy on moto; and the alarm of the policy
    file's first policy."""
    import boto3
    from moto import mock_aws

    import remediators.actions  # noqa: F401
    from remediators.core.policy import load_shipped_policy_file
    from remediators.simulator.deploy import deploy, synthesize
    from remediators.simulator.local_aws import LocalAws

    assembly = synthesize(ROOT / "remediation.yaml")
    functions: dict[str, dict[str, Any]] = {}
    with mock_aws():
        deploy(assembly, LocalAws(endpoint_url="in-process"))
        lambda_ = boto3.client("lambda")
        for page in lambda_.get_paginator("list_functions").paginate():
            for function in page["Functions"]:
                functions.setdefault(
                    function["Handler"],
                    {
                        "environment": function.get("Environment", {}).get("Variables", {}),
                        "code": _code_asset(assembly),
                    },
                )
    code = next(iter(functions.values()))["code"]
    policies = load_shipped_policy_file(Path(code) / "policy.json").policies
    alarm = policies[0].alarm.name or policies[0].alarm.name_prefix or ""
    return functions, alarm


def _code_asset(assembly: Path) -> str:
    """The code asset directory the functions are deployed from (they share one)."""
    assets = [p for p in assembly.iterdir() if p.name.startswith("asset.") and p.is_dir()]
    with_handlers = [p for p in assets if (p / "remediators" / "handlers").is_dir()]
    if len(with_handlers) != 1:
        raise RuntimeError(f"expected one code asset in {assembly}, found {with_handlers}")
    return str(with_handlers[0])


def _runtime_packages(into: Path) -> Path:
    """A directory holding (as links to this venv's) only the runtime's and the layer's
    packages, as /var/runtime and /opt/python hold them."""
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    into.mkdir()
    for name in _PACKAGES:
        for candidate in (site / name, site / f"{name}.py"):
            if candidate.exists():
                (into / candidate.name).symlink_to(candidate)
    owners = importlib.metadata.packages_distributions()
    for dist in {owner for name in _PACKAGES for owner in owners.get(name, [])}:
        for info in site.glob(f"{dist.replace('-', '_')}-*.dist-info"):
            (into / info.name).symlink_to(info)
    return into


def _sample(statement: str, env: dict[str, str]) -> float:
    result = subprocess.run(
        [sys.executable, "-S", "-c", _PROBE, statement],
        env=env,
        cwd=env.get("LAMBDA_TASK_ROOT", ROOT),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"the sample failed:\n{statement}\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1])


def run(samples: int = 15) -> dict[str, Any]:
    functions, alarm = deployed_functions()
    results: dict[str, Any] = {"samples": samples, "handlers": {}, "alarm": alarm}
    with tempfile.TemporaryDirectory() as workdir:
        packages = _runtime_packages(Path(workdir) / "packages")
        base_env = {"PATH": os.environ.get("PATH", ""), **FAKE_AWS}
        base_env["PYTHONPATH"] = str(packages)
        baseline: list[float] = []
        for handler, function in sorted(functions.items()):
            module = handler.rsplit(".", 1)[0]
            env = {
                **base_env,
                **function["environment"],
                "LAMBDA_TASK_ROOT": function["code"],
                "PYTHONPATH": f"{function['code']}{os.pathsep}{packages}",
            }
            statement = f"import {module} as m\nALARM = {alarm!r}\n{FIRST_EVENT[module]}"
            _sample(statement, env)  # writes the bytecode caches; not counted
            base, measured = [], []
            for _ in range(samples):
                base.append(_sample(BASELINE, base_env))
                measured.append(_sample(statement, env))
            baseline += base
            results["handlers"][handler] = {
                "median_s": median(measured),
                "baseline_s": median(base),
                "ratio": median(measured) / median(base),
                "goal": GOAL if handler == GOAL_HANDLER else None,
            }
        base, floor = [], []
        for _ in range(samples):
            base.append(_sample(BASELINE, base_env))
            floor.append(_sample(WITH_PYDANTIC, base_env))
        results["with_pydantic"] = {
            "median_s": median(floor),
            "ratio": median(floor) / median(base),
        }
        results["baseline_s"] = median(baseline + base)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
