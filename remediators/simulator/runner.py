"""Run a scenario end to end on the local AWS and report what happened.

Deploy the synthesized stack into moto, create the scenario's resources and alarms, then
play the steps (playback), check the expectations (expectations) and record which permissions
the calls used (permission_use).
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path

from remediators.core import clock
from remediators.core.policy import load_policy_file, parse_policy_data
from remediators.simulator.deploy import (
    DeployedStack,
    assets_bucket,
    async_invoke_settings,
    deploy,
    synthesize,
)
from remediators.simulator.expectations import check_expectations
from remediators.simulator.lambda_runtime import LambdaRuntime
from remediators.simulator.local_aws import LocalAws, in_region
from remediators.simulator.permission_use import permission_use
from remediators.simulator.playback import Playback
from remediators.simulator.results import Report
from remediators.simulator.scenario import (
    Scenario,
)

__all__ = ["Simulator"]

_INLINE_POLICY = "inline-policy.json"


class Simulator:
    """Runs scenarios on one local AWS, each on a freshly reset account."""

    def __init__(self, aws: LocalAws, cache_root: Path | None = None) -> None:
        self.aws = aws
        self.cache_root = cache_root

    def run(self, scenario: Scenario, source: str) -> Report:
        """Run `scenario` (read from `source`); bad policy input raises PolicyFileError."""
        report = Report(scenario=scenario.name, description=scenario.description)
        with (
            tempfile.TemporaryDirectory(prefix="autoremediate-sim-") as workdir,
            in_region(self.aws, scenario.region) as aws,
        ):
            policy_path = self._policy_path(scenario, source, Path(workdir))
            self._reset()
            clock.use_simulated_time()
            try:
                assembly = synthesize(policy_path, self.cache_root)
                report.note("deploy", f"synthesized the stack from {_display(policy_path, source)}")
                stack = deploy(assembly, aws)
                report.stack = stack.name
                report.note("deploy", _describe_deployment(stack, aws.region))
                runtime = LambdaRuntime(assets_bucket(aws), async_invoke_settings(stack, aws))
                try:
                    Playback(scenario, stack, runtime, report, aws).run()
                    report.permissions = permission_use(stack, runtime)
                finally:
                    runtime.close()
            finally:
                clock.use_real_time()
        report.expectations = check_expectations(scenario, report)
        return report

    def _policy_path(self, scenario: Scenario, source: str, workdir: Path) -> Path:
        inline = scenario.policy_data()
        if inline is None:
            path = (scenario.base_dir / str(scenario.policy)).resolve()
            load_policy_file(path)
            return path
        parse_policy_data(inline, f"{source} (inline policies)")
        path = workdir / _INLINE_POLICY
        path.write_text(json.dumps(inline, sort_keys=True))
        return path

    def _reset(self) -> None:
        """A fresh account for each scenario (moto's reset endpoint)."""
        request = urllib.request.Request(f"{self.aws.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass


def _display(policy_path: Path, source: str) -> str:
    return f"{source} (inline policies)" if policy_path.name == _INLINE_POLICY else str(policy_path)


def _describe_deployment(stack: DeployedStack, region: str) -> str:
    kinds: dict[str, int] = {}
    for resource in stack.template["Resources"].values():
        kinds[resource["Type"]] = kinds.get(resource["Type"], 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    text = f"deployed stack {stack.name} in {region} through CloudFormation: {summary}"
    if stack.not_simulated:
        text += f"; moto does not create {', '.join(stack.not_simulated)}"
    return text
