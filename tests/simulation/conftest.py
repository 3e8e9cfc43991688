"""The local AWS (moto's server) of a simulation test module, and one synth cache for all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remediators.simulator.local_aws import local_aws
from remediators.simulator.runner import Simulator


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="module")
def simulator(synth_cache: Path) -> Iterator[Simulator]:
    # Per module: the server points boto3 at itself until the module's tests are done.
    with local_aws() as aws:
        yield Simulator(aws, cache_root=synth_cache)
