"""Remediation actions. Importing this package registers every action by name."""

from remediators.actions.dynamodb_scale_capacity import ScaleCapacity
from remediators.actions.lambda_raise_timeout import RaiseTimeout
from remediators.actions.lambda_rollback_alias import RollbackAlias
from remediators.actions.waf_block_ips import BlockIps

__all__ = ["BlockIps", "RaiseTimeout", "RollbackAlias", "ScaleCapacity"]
