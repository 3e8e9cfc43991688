"""Run-time settings of the remediator function, read from the environment the stack sets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["POLICY_ASSET_NAME", "Settings"]

# Name of the validated policy file inside the Lambda code asset.
POLICY_ASSET_NAME = "policy.json"


class Settings(BaseModel):
    """Where the audit table, guardrail state, notification topics and policy file are."""

    model_config = ConfigDict(frozen=True)

    audit_table: str
    locks_table: str
    idempotency_table: str
    kill_switch_parameter: str
    scheduler_role_arn: str
    notification_topics: dict[str, str]
    policy_path: Path
    # The approval flow (absent in stacks built before it).
    approval_state_machine: str | None = None
    approvals_table: str | None = None
    approval_signing_secret: str | None = None
    approval_endpoint_function: str | None = None
    # The stack's name, for the approval email and page (empty in stacks built before it).
    stack_name: str = ""
    # The state machines of actions that run as flows (`Action.flow`), by flow name.
    flow_state_machines: dict[str, str] = {}

    def __hash__(self) -> int:  # the handler caches its Remediator per settings
        return hash(self.model_dump_json())

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read the variables the stack sets on the function (or `environ`, e.g. the deployed
        function's, for the CLI)."""
        env = os.environ if environ is None else environ
        task_root = Path(env.get("LAMBDA_TASK_ROOT", "."))
        return cls(
            audit_table=env["AUDIT_TABLE_NAME"],
            locks_table=env["LOCKS_TABLE_NAME"],
            idempotency_table=env["IDEMPOTENCY_TABLE_NAME"],
            kill_switch_parameter=env["KILL_SWITCH_PARAMETER"],
            scheduler_role_arn=env["SCHEDULER_ROLE_ARN"],
            notification_topics=json.loads(env.get("NOTIFICATION_TOPICS", "{}")),
            policy_path=Path(env.get("POLICY_PATH", task_root / POLICY_ASSET_NAME)),
            approval_state_machine=env.get("APPROVAL_STATE_MACHINE_ARN"),
            approvals_table=env.get("APPROVALS_TABLE_NAME"),
            approval_signing_secret=env.get("APPROVAL_SIGNING_SECRET"),
            approval_endpoint_function=env.get("APPROVAL_ENDPOINT_FUNCTION"),
            stack_name=env.get("STACK_NAME", ""),
            flow_state_machines=json.loads(env.get("FLOW_STATE_MACHINES", "{}")),
        )
