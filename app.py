"""CDK entry point: the stack from the policy file (`-c policy=PATH`, default remediation.yaml)."""

from __future__ import annotations

import sys

from remediators.core.errors import PolicyFileError
from stacks.build import build_app

if __name__ == "__main__":
    try:
        build_app().synth()
    except PolicyFileError as error:
        sys.exit(str(error))
