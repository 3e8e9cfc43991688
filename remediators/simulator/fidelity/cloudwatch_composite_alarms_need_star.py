"""CloudWatch describes composite alarms only to a caller whose cloudwatch:DescribeAlarms
permission is on `*`.

AWS: "To use this operation and return information about composite alarms, you must be signed
on with the cloudwatch:DescribeAlarms permission that is scoped to *. You can't return
information about composite alarms if your cloudwatch:DescribeAlarms permission has a narrower
scope."
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html
(the CloudWatch permissions reference says it of cloudwatch:DescribeAlarms too: "To retrieve
information about composite alarms, your cloudwatch:DescribeAlarms permission must have a *
scope", https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/permissions-reference-cw.html).
Composite alarms come back only when asked for (AlarmTypes): "If you omit this parameter, only
metric alarms are returned, even if composite alarms exist in the account."

The pages do not say how a narrower permission fails: with an error, or by leaving the composite
alarms out. The evidence found is an error: a function whose DescribeAlarms was allowed on its
alarm's own ARN, calling `describe_alarms(AlarmNames=[name], AlarmTypes=["CompositeAlarm"])`,
got "ClientError: An error occurred (AccessDenied) when calling the DescribeAlarms operation"
("Erroring when user passes a composite alarm", the maintainers); the fix was the permission on
`*` (https://github.com/cdklabs/cdk-enterprise-iac/issues/202, commit 64839b0). So the rule
refuses the call. Its message is IAM's form ("User: ARN is not authorized to perform:
cloudwatch:DescribeAlarms on resource: ...", as in
https://github.com/aws-samples/amazon-cloudwatch-auto-alarms/issues/1) without the caller's
session ARN, which the rule does not know. Which resource AWS names there is not documented, nor
the HTTP status: the rule answers 403, an authorization failure's.

moto checks no permission of the caller. A deployed function's DescribeAlarms that asks for
composite alarms and would get some (read through a session of the rule's own) is refused
unless its role allows cloudwatch:DescribeAlarms on `*` (that grant then counts as used);
outside a deployed function (the simulator's set-up, a test) the caller is not known and the
call goes through. moto 5.2.5 cannot create a composite alarm through the API (PutCompositeAlarm
raises NotImplementedError); its backend holds one (an alarm with a rule) and DescribeAlarms
returns it, which is how the tests make one.
"""

from __future__ import annotations

from typing import Any

from remediators.simulator.access import Call
from remediators.simulator.fidelity import Caller, Readers, Refusal, api_params, error_response

__all__ = ["ACTION", "REFUSAL", "RULE", "CompositeAlarmsNeedStar"]

ACTION = "cloudwatch:DescribeAlarms"
REFUSAL = Refusal(
    "AccessDenied",
    f"User is not authorized to perform: {ACTION} on resource: * because no identity-based "
    f"policy allows the {ACTION} action",
    403,
)


class CompositeAlarmsNeedStar:
    name = "cloudwatch-composite-alarms-need-describe-alarms-on-star"
    doc = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html"

    def register(self, events: Any, caller: Caller) -> None:
        readers = Readers()

        def check(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
            checker = caller()
            request = api_params(context)
            if checker is None or "CompositeAlarm" not in request.get("AlarmTypes", []):
                return None
            if not _composite_alarms(request, str(context.get("client_region")), readers):
                return None
            if checker.allowed(Call(ACTION, "*")):
                return None
            return error_response(REFUSAL, str(params.get("url", "")))

        events.register("before-call.cloudwatch.DescribeAlarms", check)


def _composite_alarms(request: dict[str, Any], region: str, readers: Readers) -> bool:
    """Whether the call would describe a composite alarm, read through a session of the rule's
    own: the rule's read is no call of the caller's (its role, the calls a test counts)."""
    from botocore.exceptions import ClientError

    try:
        answer = readers("cloudwatch", region).describe_alarms(**request)
    except ClientError:
        return False  # the call itself will say what is wrong
    return bool(answer.get("CompositeAlarms"))


RULE = CompositeAlarmsNeedStar()
