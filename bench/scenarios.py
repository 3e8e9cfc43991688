"""Figure 6: simulated end-to-end time per built-in scenario (the synth is cached first):
per event, from delivery to the change read back; and the whole scenario run."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.common import median, quiet_stdout


def run() -> dict[str, Any]:
    import remediators.actions  # noqa: F401
    from remediators.simulator.local_aws import local_aws
    from remediators.simulator.runner import Simulator
    from remediators.simulator.scenario import built_in_scenarios, load_scenario

    results: dict[str, Any] = {}
    with local_aws() as aws, quiet_stdout():
        simulator = Simulator(aws)
        for name, path in built_in_scenarios().items():
            scenario = load_scenario(path)
            simulator.run(scenario, str(path))  # warm: synth cached, modules imported
            begun = time.perf_counter()
            report = simulator.run(scenario, str(path))
            results[name] = {
                "passed": report.passed,
                "run_s": time.perf_counter() - begun,
                "events": len(report.events),
                "event_ms_median": median([e.elapsed_ms for e in report.events])
                if report.events
                else None,
            }
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
