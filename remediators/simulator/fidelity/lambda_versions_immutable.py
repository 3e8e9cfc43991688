"""A published Lambda version is immutable: only `$LATEST` can be updated.

AWS: "These settings can vary between versions of a function and are locked when you publish a
version. You can't modify the configuration of a published version, only the unpublished
version." https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html
and "After you publish a function version, its code, runtime, architecture, memory, layers, and
most other configuration settings are immutable." (Manage Lambda function versions,
https://docs.aws.amazon.com/lambda/latest/dg/configuration-versions.html). The update APIs name
the function only by name or ARN; a qualified one is refused with
InvalidParameterValueException "Current operation does not support versions other than
$LATEST" (the message as users report it: https://github.com/appleboy/lambda-action/issues/6).

moto updates whatever a qualified name (`name:5`, a qualified ARN) resolves to: the published
version's configuration changes, and an alias that serves it runs the new settings, as no
version in AWS ever does.
"""

from __future__ import annotations

from typing import Any

from remediators.simulator.fidelity import Caller, Refusal, api_params, error_response
from remediators.simulator.fidelity.lambda_update_in_progress import function_name

__all__ = ["RULE", "LambdaVersionsImmutable"]

_UPDATES = ("UpdateFunctionConfiguration", "UpdateFunctionCode")


class LambdaVersionsImmutable:
    name = "lambda-published-versions-are-immutable"
    doc = "https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html"

    def register(self, events: Any, caller: Caller) -> None:
        for operation in _UPDATES:
            events.register(f"before-call.lambda.{operation}", self._check)

    @staticmethod
    def _check(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        _name, qualifier = function_name(str(api_params(context).get("FunctionName", "")))
        if qualifier in (None, "$LATEST"):
            return None
        refusal = Refusal(
            "InvalidParameterValueException",
            "Current operation does not support versions other than $LATEST",
        )
        return error_response(refusal, str(params.get("url", "")))


RULE = LambdaVersionsImmutable()
