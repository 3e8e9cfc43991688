"""Remediation actions. Importing this package registers every action by name."""

from remediators.actions.dynamodb_scale_capacity import ScaleCapacity

__all__ = ["ScaleCapacity"]
