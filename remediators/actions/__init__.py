"""Remediation actions. Importing this package registers every action by name."""

from remediators.actions.api_diagnose import ApiDiagnose
from remediators.actions.dynamodb_restore_from_backup import RestoreFromBackup
from remediators.actions.dynamodb_scale_capacity import ScaleCapacity
from remediators.actions.lambda_raise_concurrency import RaiseConcurrency
from remediators.actions.lambda_raise_timeout import RaiseTimeout
from remediators.actions.lambda_rollback_alias import RollbackAlias
from remediators.actions.waf_block_ips import BlockIps

__all__ = [
    "ApiDiagnose",
    "BlockIps",
    "RaiseConcurrency",
    "RaiseTimeout",
    "RestoreFromBackup",
    "RollbackAlias",
    "ScaleCapacity",
]
