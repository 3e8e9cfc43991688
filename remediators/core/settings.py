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
    """Where the audit table, notification topics and policy file are."""

    model_config = ConfigDict(frozen=True)

    audit_table: str
    notification_topics: dict[str, str]
    policy_path: Path

    def __hash__(self) -> int:  # the handler caches its Remediator per settings
        return hash(self.model_dump_json())

    @classmethod
    def from_env(cls) -> Settings:
        """Read `AUDIT_TABLE_NAME`, `NOTIFICATION_TOPICS` (JSON) and the policy's location."""
        task_root = Path(os.environ.get("LAMBDA_TASK_ROOT", "."))
        return cls(
            audit_table=os.environ["AUDIT_TABLE_NAME"],
            notification_topics=json.loads(os.environ.get("NOTIFICATION_TOPICS", "{}")),
            policy_path=Path(os.environ.get("POLICY_PATH", task_root / POLICY_ASSET_NAME)),
        )
