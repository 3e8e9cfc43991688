"""PublishVersion's `CodeSha256` is a precondition: the version is published only if `$LATEST`
has that code.

AWS: "CodeSha256 - Only publish a version if the hash value matches the value that's specified.
Use this option to avoid publishing a version if the function code has changed since you last
updated it." https://docs.aws.amazon.com/lambda/latest/api/API_PublishVersion.html
A hash that does not match is refused with InvalidParameterValueException (400), "CodeSHA256
(GIVEN) is different from current CodeSHA256 in $LATEST (CURRENT). Please try again with the
CodeSHA256 in $LATEST." (the message as Lambda writes it, reported by users of CloudFormation
and the Serverless framework).

moto ignores `CodeSha256` and publishes whatever `$LATEST` holds.
"""

from __future__ import annotations

from typing import Any

from remediators.simulator.fidelity import Caller, Readers, Refusal, api_params, error_response
from remediators.simulator.fidelity.lambda_update_in_progress import function_name

__all__ = ["RULE", "LambdaPublishCodeSha"]


class LambdaPublishCodeSha:
    name = "lambda-publish-version-checks-code-sha256"
    doc = "https://docs.aws.amazon.com/lambda/latest/api/API_PublishVersion.html"

    def register(self, events: Any, caller: Caller) -> None:
        readers = Readers()

        def check(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
            request = api_params(context)
            wanted = request.get("CodeSha256")
            if not wanted:
                return None
            current = _latest_code_sha(
                str(context.get("client_region")), str(request.get("FunctionName", "")), readers
            )
            if current is None or current == wanted:
                return None  # an unknown function: PublishVersion itself says so
            refusal = Refusal(
                "InvalidParameterValueException",
                f"CodeSHA256 ({wanted}) is different from current CodeSHA256 in $LATEST "
                f"({current}). Please try again with the CodeSHA256 in $LATEST.",
            )
            return error_response(refusal, str(params.get("url", "")))

        events.register("before-call.lambda.PublishVersion", check)


def _latest_code_sha(region: str, reference: str, readers: Readers) -> str | None:
    """$LATEST's CodeSha256 (None: no such function)."""
    from botocore.exceptions import ClientError

    name, _ = function_name(reference)
    try:
        configuration = readers("lambda", region).get_function_configuration(FunctionName=name)
    except ClientError:
        return None
    return str(configuration["CodeSha256"])


RULE = LambdaPublishCodeSha()
