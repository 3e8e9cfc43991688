"""The one exception family of autoremediate."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActionError",
    "AutoremediateError",
    "PolicyFileError",
    "TargetNotFound",
    "UnknownAction",
]


class AutoremediateError(Exception):
    """Base class of every error autoremediate raises on purpose."""


class PolicyFileError(AutoremediateError):
    """The policy file cannot be read or does not validate; the message names the field."""


class UnknownAction(AutoremediateError):
    """A policy names an action that is not registered; the message lists the valid ones."""


class ActionError(AutoremediateError):
    """An action could not plan or apply its change."""

    @classmethod
    def from_client_error(cls, call: str, error: Any) -> ActionError:
        """`<call> failed: <Code>: <Message>` from a botocore ClientError."""
        details = error.response.get("Error", {})
        return cls(f"{call} failed: {details.get('Code', 'Error')}: {details.get('Message', '')}")


class TargetNotFound(ActionError):
    """The resource an action should change does not exist."""
