"""Application Auto Scaling checks that the caller of RegisterScalableTarget and
PutScalingPolicy may also use the CloudWatch alarms it manages for it.

AWS: "Application Auto Scaling validates permissions for requests associated with both the
target service and CloudWatch before proceeding with the request": it calls PutMetricAlarm and
DeleteAlarms "without any parameters" and DescribeAlarms with one record, as the caller; for an
unauthorized caller "it results in AccessDenied and sends a validation exception to the user"
that lists the missing permissions.
https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_permission_validation.html
Without parameters there is no alarm ARN: the permissions must be on `*`. The exact message is
not documented; the rule's names the missing permissions.

moto checks nothing of the kind. Outside a deployed function (the simulator's own set-up, a
test's) the caller is not known and the call goes through; a function's call is checked
against its deployed role, and the three grants count as used.
"""

from __future__ import annotations

from typing import Any

from remediators.simulator.access import Call
from remediators.simulator.fidelity import Caller, Refusal, error_response

__all__ = ["CLOUDWATCH_ACTIONS", "RULE", "AutoscalingChecksCloudWatch"]

CLOUDWATCH_ACTIONS = (
    "cloudwatch:DescribeAlarms",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:DeleteAlarms",
)
_CHECKED = ("RegisterScalableTarget", "PutScalingPolicy")


class AutoscalingChecksCloudWatch:
    name = "application-autoscaling-checks-cloudwatch-permissions"
    doc = (
        "https://docs.aws.amazon.com/autoscaling/application/userguide/"
        "security_iam_permission_validation.html"
    )

    def register(self, events: Any, caller: Caller) -> None:
        def check(params: dict[str, Any], model: Any, **_: Any) -> Any:
            checker = caller()
            if checker is None:
                return None
            missing = [a for a in CLOUDWATCH_ACTIONS if not checker.allowed(Call(a, "*"))]
            if not missing:
                return None
            refusal = Refusal(
                "ValidationException",
                f"Unable to validate the permissions of the caller for {model.name}: it may not "
                f"call {', '.join(missing)}",
            )
            return error_response(refusal, str(params.get("url", "")))

        for operation in _CHECKED:
            events.register(f"before-call.application-auto-scaling.{operation}", check)


RULE = AutoscalingChecksCloudWatch()
