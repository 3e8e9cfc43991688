"""Remediation actions. Importing this package declares every action by name; an action's
module is imported when the action is first asked for (`registry.get_action`)."""

from remediators.core.registry import declare

ACTION_MODULES = {
    "api.diagnose": "remediators.actions.api_diagnose",
    "dynamodb.restore_from_backup": "remediators.actions.dynamodb_restore_from_backup",
    "dynamodb.scale_capacity": "remediators.actions.dynamodb_scale_capacity",
    "lambda.raise_concurrency": "remediators.actions.lambda_raise_concurrency",
    "lambda.raise_timeout": "remediators.actions.lambda_raise_timeout",
    "lambda.rollback_alias": "remediators.actions.lambda_rollback_alias",
    "waf.block_ips": "remediators.actions.waf_block_ips",
}

for _name, _module in ACTION_MODULES.items():
    declare(_name, _module)
