"""WAFv2 answers calls for CloudFront (`Scope=CLOUDFRONT`) only at its us-east-1 endpoint.

AWS: "To work with CloudFront, you must also specify the Region US East (N. Virginia) ...
API and SDKs - For all calls, use the Region endpoint us-east-1."
https://docs.aws.amazon.com/waf/latest/APIReference/API_CreateIPSet.html (the Scope parameter,
the same on every call that takes it). From another region AWS refuses the call with
WAFInvalidParameterException "Error reason: The scope is not valid., field: SCOPE_VALUE,
parameter: CLOUDFRONT".

moto maps CLOUDFRONT to its global region whatever the client's region, so a CloudFront call
from eu-west-1 works there.
"""

from __future__ import annotations

from typing import Any

from remediators.simulator.fidelity import Caller, Refusal, api_params, error_response

__all__ = ["RULE", "WafCloudFrontRegion"]

CLOUDFRONT_REGION = "us-east-1"
REFUSAL = Refusal(
    "WAFInvalidParameterException",
    "Error reason: The scope is not valid., field: SCOPE_VALUE, parameter: CLOUDFRONT",
)


class WafCloudFrontRegion:
    name = "wafv2-cloudfront-scope-in-us-east-1"
    doc = "https://docs.aws.amazon.com/waf/latest/APIReference/API_CreateIPSet.html"

    def register(self, events: Any, caller: Caller) -> None:
        events.register("before-call.wafv2", self._check)

    @staticmethod
    def _check(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        scope = api_params(context).get("Scope")
        if scope == "CLOUDFRONT" and context.get("client_region") != CLOUDFRONT_REGION:
            return error_response(REFUSAL, str(params.get("url", "")))
        return None


RULE = WafCloudFrontRegion()
