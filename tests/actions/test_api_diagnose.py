"""api.diagnose on moto: an API's 5xx alarm, through the remediator handler of the deployed
stack, diagnosed from its functions' metrics into the action an operator would choose, which
then meets the guardrails on the function it changes; and the diagnosis itself (discovery,
findings no action may fix), its permissions and its policy validation."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from remediators.actions import api_diagnose
from remediators.actions.api_diagnose import ApiDiagnose, ApiDiagnoseParams, ApiTarget
from remediators.core import clock
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.aws import client
from remediators.core.errors import ActionError, PolicyFileError, TargetNotFound
from remediators.core.events import AlarmDetail
from remediators.core.guardrails import GuardrailState
from remediators.core.policy import parse_policy_data
from remediators.core.registry import get_action
from remediators.simulator.resources import wait_for_update
from tests.conftest import LambdaContext, create_function, load_event

Handler = Any
API = "shop"
ALARM = "shop-api-5xx"


# --- the world: an API, its functions, their metrics ----------------------------------------


def _rest_api(routes: dict[str, str], name: str = API) -> None:
    """A REST API whose POST /<path> invokes each function (`name` or `name:alias`)."""
    apigateway = boto3.client("apigateway")
    api_id = apigateway.create_rest_api(name=name)["id"]
    root = apigateway.get_resources(restApiId=api_id)["items"][0]["id"]
    for path, function in routes.items():
        resource = apigateway.create_resource(restApiId=api_id, parentId=root, pathPart=path)
        apigateway.put_method(
            restApiId=api_id,
            resourceId=resource["id"],
            httpMethod="POST",
            authorizationType="NONE",
        )
        apigateway.put_integration(
            restApiId=api_id,
            resourceId=resource["id"],
            httpMethod="POST",
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri="arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
            f"{_arn(function)}/invocations",
        )


def _arn(function: str) -> str:
    return f"arn:aws:lambda:us-east-1:123456789012:function:{function}"


def _metric(function: str, name: str, value: float, at: datetime, alias: str | None = None) -> None:
    dimensions = [{"Name": "FunctionName", "Value": function}]
    if alias:
        dimensions.append({"Name": "Resource", "Value": f"{function}:{alias}"})
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {"MetricName": name, "Dimensions": dimensions, "Value": value, "Timestamp": at}
        ],
    )


def _alias_moved_to_version_2(function: str = "checkout") -> None:
    """Versions 1 and 2 published (2 just now); alias `live` serves 2."""
    lambda_client = boto3.client("lambda")
    for timeout in (4, 5):
        lambda_client.update_function_configuration(FunctionName=function, Timeout=timeout)
        wait_for_update(function)  # Lambda refuses to publish while it updates
        lambda_client.publish_version(FunctionName=function)
    lambda_client.create_alias(FunctionName=function, Name="live", FunctionVersion="2")


def _errors_since_the_move(alarm_at: datetime, before: int = 0, after: int = 40) -> None:
    """checkout:live: 500 calls with `before` errors half an hour before version 2 was
    published (now), 100 calls with `after` errors since, up to the alarm."""
    now = datetime.now(UTC)
    _metric("checkout", "Invocations", 500, now - timedelta(minutes=30), "live")
    _metric("checkout", "Errors", before, now - timedelta(minutes=30), "live")
    _metric("checkout", "Invocations", 100, alarm_at - timedelta(minutes=2), "live")
    _metric("checkout", "Errors", after, alarm_at - timedelta(minutes=2), "live")


def _timeout(function: str = "api-handler") -> int:
    config = boto3.client("lambda").get_function_configuration(FunctionName=function)
    return int(config["Timeout"])


def _live_version() -> str:
    alias = boto3.client("lambda").get_alias(FunctionName="checkout", Name="live")
    return str(alias["FunctionVersion"])


# --- the alarm and the policy ---------------------------------------------------------------


def _event(at: datetime | None = None, api: str = API) -> dict[str, Any]:
    """The API's 5XXError alarm entering ALARM `at` (default now)."""
    event = load_event("single_metric")
    event["id"] = str(uuid.uuid4())
    detail = event["detail"]
    detail["alarmName"] = ALARM
    detail["state"]["timestamp"] = (at or datetime.now(UTC)).isoformat()
    detail["configuration"]["metrics"][0]["metricStat"]["metric"] = {
        "namespace": "AWS/ApiGateway",
        "name": "5XXError",
        "dimensions": {"ApiName": api},
    }
    return event


def _policy(**policy: Any) -> dict[str, Any]:
    params = policy.pop("params", {})
    return {
        "defaults": {"notify": "ops"},
        "notifications": {"ops": {"email": ["oncall@example.com"]}},
        "policies": [
            {
                "name": "shop-errors",
                "alarm": {"name": ALARM},
                "action": "api.diagnose",
                "params": params,
                **policy,
            }
        ],
    }


@pytest.fixture
def use_policy(
    function_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Run the deployed remediator with this test's policy file instead of the example's."""

    def use(data: dict[str, Any]) -> None:
        path = tmp_path / "policy.json"
        path.write_text(json.dumps(data))
        monkeypatch.setenv("POLICY_PATH", str(path))

    use(_policy())
    return use


def _audit(function_env: dict[str, str], event_id: str) -> AuditRecord:
    record = AuditStore(function_env["AUDIT_TABLE_NAME"]).get(event_id)
    assert record is not None, f"no audit record for {event_id}"
    return record


def _slow_api_handler() -> None:
    """api-handler (10 s timeout) behind POST /orders took 9.7 s; search behind POST /search
    is quick and fine."""
    create_function("api-handler", timeout=10)
    create_function("search", timeout=10)
    _rest_api({"orders": "api-handler", "search": "search"})
    now = datetime.now(UTC)
    _metric("api-handler", "Duration", 9700, now - timedelta(minutes=2))
    _metric("api-handler", "Errors", 20, now - timedelta(minutes=2))
    _metric("search", "Duration", 120, now - timedelta(minutes=2))
    _metric("search", "Errors", 1, now - timedelta(minutes=2))


# --- duration near the timeout -> lambda.raise_timeout --------------------------------------


@pytest.mark.usefixtures("use_policy")
def test_a_function_near_its_timeout_gets_a_longer_one_and_the_figures_are_recorded(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _slow_api_handler()
    event = _event()

    result = handler(event, LambdaContext())

    assert (result["outcome"], result["reason"]) == ("applied", None)
    assert _timeout("api-handler") == 15  # 10 s * 1.5
    assert _timeout("search") == 10
    record = _audit(function_env, event["id"])
    assert (record.policy, record.action, record.target) == (
        "shop-errors",
        "lambda.raise_timeout",
        "lambda:function/api-handler",
    )
    assert record.target_spec == {"function": "api-handler", "qualifier": None}
    assert record.before is not None
    assert record.after is not None
    assert (record.before["timeout"], record.after["timeout"]) == (10, 15)
    assert record.diagnosis is not None
    assert record.diagnosis["action"] == "lambda.raise_timeout"
    assert record.diagnosis["target"] == {"function": "api-handler"}
    slow, quick = record.diagnosis["figures"]["api-handler"], record.diagnosis["figures"]["search"]
    assert (slow["duration_max_ms"], slow["timeout_s"], slow["duration_of_timeout"]) == (
        9700,
        10,
        0.97,
    )
    assert (slow["errors"], quick["errors"], quick["duration_max_ms"]) == (20, 1, 120)
    assert "9700 ms, 97% of its 10 s timeout" in record.diagnosis["reason"]


@pytest.mark.usefixtures("use_policy")
def test_a_retry_after_a_lost_answer_keeps_the_first_choice_and_changes_nothing_more(
    handler: Handler, function_env: dict[str, str]
) -> None:
    # The timeout update goes through, but its answer is lost (read timeout after the call)
    _slow_api_handler()
    event = _event()
    lost = [True]

    def lose_the_answer(**_: Any) -> None:
        if lost.pop() if lost else False:
            raise ReadTimeoutError(endpoint_url="https://lambda.us-east-1.amazonaws.com")

    client("lambda").meta.events.register(
        "after-call.lambda.UpdateFunctionConfiguration", lose_the_answer
    )
    with pytest.raises(ReadTimeoutError):
        handler(event, LambdaContext())
    assert _audit(function_env, event["id"]).outcome is Outcome.FAILED
    assert _timeout() == 15  # made, although the attempt failed

    # Lambda retries the event: 9.7 s of a 15 s timeout would diagnose nothing now
    result = handler(event, LambdaContext())

    assert (result["outcome"], result["action"]) == ("applied", "lambda.raise_timeout")
    assert _timeout() == 15  # not raised a second time
    record = _audit(function_env, event["id"])
    assert record.diagnosis is not None
    assert record.diagnosis["figures"]["api-handler"]["timeout_s"] == 10  # the first reading
    assert record.error is not None
    assert "its change went through: not made again" in record.error


def test_a_refire_inside_the_cooldown_is_skipped_on_the_function_it_changed(
    handler: Handler, use_policy: Any
) -> None:
    use_policy(_policy(params={"raise_timeout": {"factor": 2, "max_seconds": 120}}))
    _slow_api_handler()
    clock.use_simulated_time()
    first_alarm = datetime.now(UTC)
    second_alarm = first_alarm + timedelta(minutes=10)  # the default cooldown is 15 minutes
    # Still timing out at the new limit (20 s) when the alarm fires again.
    _metric("api-handler", "Duration", 19_800, second_alarm - timedelta(minutes=2))

    first = handler(_event(first_alarm), LambdaContext())
    clock.advance(timedelta(minutes=10))
    second = handler(_event(second_alarm), LambdaContext())

    assert first["outcome"] == "applied"
    assert (second["outcome"], second["reason"]) == ("skipped", "cooldown")
    assert (second["action"], second["target"]) == (
        "lambda.raise_timeout",
        "lambda:function/api-handler",
    )
    assert _timeout() == 20  # raised once: 10 s * 2
    assert second["diagnosis"]["figures"]["api-handler"]["duration_of_timeout"] == 0.99


@pytest.mark.usefixtures("use_policy")
def test_the_function_the_diagnosis_chose_is_what_the_lock_guards(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _slow_api_handler()
    locks = GuardrailState(
        function_env["LOCKS_TABLE_NAME"], AuditStore(function_env["AUDIT_TABLE_NAME"])
    )

    with locks.hold("lambda:function/api-handler", owner="another-alarm") as held:
        blocked = handler(_event(), LambdaContext())

    assert held is True
    assert (blocked["outcome"], blocked["reason"]) == ("skipped", "locked")
    assert _timeout() == 10


@pytest.mark.usefixtures("use_policy")
def test_explain_tells_the_chosen_action_and_changes_nothing(
    handler: Handler, function_env: dict[str, str]
) -> None:
    from remediators.core.events import AlarmEvent
    from remediators.core.remediate import Remediator
    from remediators.core.settings import Settings

    _slow_api_handler()
    remediator = Remediator.from_settings(Settings.from_env(), "arn:aws:lambda:::function:x")

    record = remediator.explain(AlarmEvent.model_validate(_event()))

    assert (record.outcome, record.action, record.target) == (
        Outcome.APPLIED,  # would apply
        "lambda.raise_timeout",
        "lambda:function/api-handler",
    )
    assert record.changes == ["timeout 10 s -> 15 s"]
    assert record.diagnosis is not None
    assert record.diagnosis["figures"]["api-handler"]["duration_max_ms"] == 9700
    assert _timeout() == 10


def test_a_dry_run_records_the_diagnosis_and_the_plan_and_changes_nothing(
    handler: Handler, use_policy: Any
) -> None:
    use_policy(_policy(dry_run=True))
    _slow_api_handler()

    result = handler(_event(), LambdaContext())

    assert (result["outcome"], result["reason"], result["dry_run"]) == ("skipped", "dry_run", True)
    assert (result["action"], result["changes"]) == (
        "lambda.raise_timeout",
        ["timeout 10 s -> 15 s"],
    )
    assert result["diagnosis"]["action"] == "lambda.raise_timeout"
    assert _timeout() == 10


# --- throttles -> lambda.raise_concurrency --------------------------------------------------


@pytest.mark.usefixtures("use_policy")
def test_a_throttled_function_gets_more_reserved_concurrency(
    handler: Handler, function_env: dict[str, str]
) -> None:
    create_function("api-handler", timeout=10)
    boto3.client("lambda").put_function_concurrency(
        FunctionName="api-handler", ReservedConcurrentExecutions=10
    )
    _rest_api({"orders": "api-handler"})
    _metric("api-handler", "Throttles", 50, datetime.now(UTC) - timedelta(minutes=2))
    _metric("api-handler", "Duration", 800, datetime.now(UTC) - timedelta(minutes=2))
    event = _event()

    result = handler(event, LambdaContext())

    assert result["outcome"] == "applied"
    reserved = boto3.client("lambda").get_function_concurrency(FunctionName="api-handler")
    assert reserved["ReservedConcurrentExecutions"] == 15  # 10 * 1.5
    record = _audit(function_env, event["id"])
    assert (record.action, record.target) == (
        "lambda.raise_concurrency",
        "lambda:function/api-handler",
    )
    assert record.diagnosis is not None
    figures = record.diagnosis["figures"]["api-handler"]
    assert (figures["throttles"], figures["reserved_concurrency"]) == (50, 10)
    assert _timeout() == 10  # 800 ms of 10 s: not a timeout


@pytest.mark.usefixtures("aws")
def test_throttles_without_a_reservation_are_left_to_a_person() -> None:
    create_function("api-handler", timeout=10)
    _rest_api({"orders": "api-handler"})
    _metric("api-handler", "Throttles", 50, datetime.now(UTC) - timedelta(minutes=2))

    diagnosis = _diagnose()

    assert diagnosis.action is None
    assert diagnosis.figures["api-handler"]["throttles"] == 50
    assert "no reserved concurrency" in diagnosis.reason


# --- errors since the alias moved -> lambda.rollback_alias ----------------------------------


def test_errors_since_the_alias_moved_wait_for_approval_then_roll_it_back(
    deployed: Any,
    handler: Handler,
    function_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    use_policy: Any,
) -> None:
    from tests.handlers.test_remediator import _approval_task

    create_function("checkout", timeout=3)
    _alias_moved_to_version_2()
    _rest_api({"checkout": "checkout:live"})
    alarm_at = datetime.now(UTC) + timedelta(minutes=5)  # 5 minutes after version 2
    _errors_since_the_move(alarm_at)
    event = _event(alarm_at)

    pending = handler(event, LambdaContext())

    # Risky: planned and handed to the approval flow; nothing changed yet.
    assert (pending["outcome"], pending["reason"]) == ("pending", "awaiting_approval")
    assert (pending["action"], pending["target"]) == (
        "lambda.rollback_alias",
        "lambda:function/checkout:live",
    )
    assert _live_version() == "2"
    execution = boto3.client("stepfunctions").describe_execution(
        executionArn=pending["approval"]["execution"]
    )
    request = json.loads(execution["input"])
    assert (request["action"], request["params"]) == ("lambda.rollback_alias", {})
    assert request["target_spec"] == {"function": "checkout", "alias": "live"}
    figures = pending["diagnosis"]["figures"]["checkout:live"]
    assert (figures["errors_before"], figures["invocations_before"]) == (0, 500)
    assert (figures["errors_after"], figures["invocations_after"]) == (40, 100)
    assert (figures["version"], figures["previous_version"]) == ("2", "1")

    applied = _approval_task(deployed, monkeypatch, {"task": "apply"}, request)

    assert applied["outcome"] == "applied"
    assert _live_version() == "1"
    record = _audit(function_env, event["id"])
    assert (record.action, record.target) == (
        "lambda.rollback_alias",
        "lambda:function/checkout:live",
    )
    assert (record.before, record.after) == (
        {"version": "2", "weights": {}},
        {"version": "1", "weights": {}},
    )
    assert record.diagnosis is not None  # carried over from the pending record
    assert record.diagnosis["figures"]["checkout:live"]["errors_after"] == 40


def test_a_rollback_the_policy_runs_unattended_is_applied_at_once(
    handler: Handler, use_policy: Any
) -> None:
    use_policy(_policy(approval="never"))
    create_function("checkout", timeout=3)
    _alias_moved_to_version_2()
    _rest_api({"checkout": "checkout:live"})
    alarm_at = datetime.now(UTC) + timedelta(minutes=5)
    _errors_since_the_move(alarm_at)

    result = handler(_event(alarm_at), LambdaContext())

    assert (result["outcome"], result["action"]) == ("applied", "lambda.rollback_alias")
    assert _live_version() == "1"


@pytest.mark.usefixtures("aws")
def test_errors_as_frequent_before_the_move_are_no_reason_to_roll_back() -> None:
    create_function("checkout", timeout=3)
    _alias_moved_to_version_2()
    _rest_api({"checkout": "checkout:live"})
    alarm_at = datetime.now(UTC) + timedelta(minutes=5)
    _errors_since_the_move(alarm_at, before=150, after=40)  # 30% before, 40% since

    diagnosis = _diagnose(alarm_at)

    assert diagnosis.action is None
    figures = diagnosis.figures["checkout:live"]
    assert figures["error_rate_before (of invocations)"] == 0.3
    assert figures["error_rate_after (of invocations)"] == 0.4


# --- nothing conclusive -> escalated with the figures ---------------------------------------


@pytest.mark.usefixtures("use_policy")
def test_nothing_conclusive_is_skipped_and_escalated_with_the_figures(
    handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    create_function("api-handler", timeout=10)
    _rest_api({"orders": "api-handler"})
    _metric("api-handler", "Errors", 3, datetime.now(UTC) - timedelta(minutes=2))
    _metric("api-handler", "Duration", 1200, datetime.now(UTC) - timedelta(minutes=2))
    event = _event()

    result = handler(event, LambdaContext())

    assert (result["outcome"], result["reason"], result["escalated"]) == (
        "skipped",
        "inconclusive",
        True,
    )
    assert _timeout() == 10
    record = _audit(function_env, event["id"])
    assert (record.action, record.target) == ("api.diagnose", f"apigateway:api/{API}")
    assert record.diagnosis is not None
    assert record.diagnosis["action"] is None
    figures = record.diagnosis["figures"]["api-handler"]
    assert (figures["errors"], figures["duration_max_ms"], figures["timeout_s"]) == (3, 1200, 10)
    [message] = inbox()
    assert message["Subject"] == f"[autoremediate] ESCALATION: inconclusive on apigateway:api/{API}"
    assert (
        "api-handler: 3 error(s), 0 throttle(s), longest invocation 1200 ms of 10 s"
        in (message["Message"])
    )


@pytest.mark.usefixtures("aws")
def test_an_alias_near_its_timeout_gets_a_longer_one_in_a_version_of_its_own() -> None:
    create_function("checkout", timeout=3)
    _alias_moved_to_version_2()  # version 2: 5 s
    _rest_api({"checkout": "checkout:live"})
    _metric("checkout", "Duration", 4900, datetime.now(UTC) - timedelta(minutes=2), "live")

    diagnosis = _diagnose()

    assert diagnosis.figures["checkout:live"]["duration_of_timeout"] == 0.98
    # lambda.raise_timeout publishes the new version and moves the alias (or says why not).
    assert (diagnosis.action, diagnosis.target) == (
        "lambda.raise_timeout",
        {"function": "checkout", "qualifier": "live"},
    )


@pytest.mark.usefixtures("aws")
def test_a_published_version_near_its_timeout_is_a_finding_not_a_fix() -> None:
    create_function("checkout", timeout=3)
    _alias_moved_to_version_2()  # version 2: 5 s
    _rest_api({"checkout": "checkout:2"})
    _metric("checkout", "Duration", 4900, datetime.now(UTC) - timedelta(minutes=2), "2")

    diagnosis = _diagnose()

    assert diagnosis.action is None
    assert diagnosis.figures["checkout:2"]["duration_of_timeout"] == 0.98
    assert "whose timeout cannot change" in diagnosis.reason


@pytest.mark.usefixtures("aws")
def test_a_canary_is_dated_by_its_new_version_and_rolled_back_to_the_old_one() -> None:
    create_function("checkout", timeout=3)
    _alias_moved_to_version_2()
    # A canary: live serves version 1 (published a day ago) and sends 10% to version 2 (now).
    boto3.client("lambda").update_alias(
        FunctionName="checkout",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    a_day_ago = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    def version_1_is_old(parsed: dict[str, Any], **_: Any) -> None:
        for version in parsed.get("Versions", []):
            if version["Version"] == "1":
                version["LastModified"] = a_day_ago

    client("lambda").meta.events.register(
        "after-call.lambda.ListVersionsByFunction", version_1_is_old
    )
    _rest_api({"checkout": "checkout:live"})
    alarm_at = datetime.now(UTC) + timedelta(minutes=5)
    _errors_since_the_move(alarm_at)

    diagnosis = _diagnose(alarm_at)

    figures = diagnosis.figures["checkout:live"]
    assert (figures["deployed_version"], figures["previous_version"]) == ("2", "1")
    assert (diagnosis.action, diagnosis.target) == (
        "lambda.rollback_alias",
        {"function": "checkout", "alias": "live"},
    )
    assert "since version 2 was published" in diagnosis.reason


@pytest.mark.usefixtures("aws")
def test_a_follow_up_the_policy_turns_off_is_never_chosen() -> None:
    create_function("api-handler", timeout=10)
    _rest_api({"orders": "api-handler"})
    _metric("api-handler", "Duration", 9900, datetime.now(UTC) - timedelta(minutes=2))

    diagnosis = _diagnose(params={"raise_timeout": None})

    assert diagnosis.action is None
    assert "lambda.raise_timeout is off in this policy" in diagnosis.reason


# --- finding the functions ------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_functions_are_found_from_the_rest_apis_integrations_alias_and_all() -> None:
    create_function("api-handler")
    create_function("checkout")
    _alias_moved_to_version_2()
    _rest_api({"orders": "api-handler", "checkout": "checkout:live", "again": "api-handler"})
    _rest_api({"other": "search"}, name="another-api")

    diagnosis = _diagnose()

    assert sorted(diagnosis.figures) == ["api-handler", "checkout:live"]
    assert diagnosis.figures["checkout:live"]["version"] == "2"


@pytest.mark.usefixtures("aws")
def test_functions_are_found_from_an_http_apis_integrations() -> None:
    create_function("api-handler", timeout=10)
    apigateway = boto3.client("apigatewayv2")
    api_id = apigateway.create_api(Name=API, ProtocolType="HTTP")["ApiId"]
    apigateway.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=_arn("api-handler"),
        PayloadFormatVersion="2.0",
    )
    _metric("api-handler", "Duration", 9500, datetime.now(UTC) - timedelta(minutes=2))

    diagnosis = _diagnose()

    assert (diagnosis.action, diagnosis.target) == (
        "lambda.raise_timeout",
        {"function": "api-handler"},
    )


@pytest.mark.usefixtures("aws")
def test_functions_the_policy_names_are_not_looked_up() -> None:
    create_function("api-handler", timeout=10)  # and no API at all
    _metric("api-handler", "Duration", 9500, datetime.now(UTC) - timedelta(minutes=2))

    diagnosis = _diagnose(target=ApiTarget(api=API, functions=["api-handler"]))

    assert diagnosis.action == "lambda.raise_timeout"


@pytest.mark.usefixtures("use_policy")
def test_an_api_that_does_not_exist_is_skipped_as_target_not_found(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _rest_api({"orders": "api-handler"}, name="another-api")
    event = _event()

    result = handler(event, LambdaContext())

    assert (result["outcome"], result["reason"]) == ("skipped", "target_not_found")
    assert f"API {API} does not exist" in result["error"]
    assert _audit(function_env, event["id"]).target == f"apigateway:api/{API}"


@pytest.mark.usefixtures("aws")
def test_a_diagnosing_action_plans_and_applies_nothing_itself() -> None:
    action = ApiDiagnose(ApiTarget(api=API), _params())

    with pytest.raises(ActionError, match="diagnoses and changes nothing itself: `plan`"):
        action.plan()
    with pytest.raises(TargetNotFound, match=f"API {API} does not exist"):
        action.diagnose()


# --- policy and permissions -----------------------------------------------------------------


def _load(**policy: Any) -> Any:
    return parse_policy_data(_policy(**policy), "remediation.yaml")


def test_bad_follow_up_params_fail_when_the_policy_is_loaded() -> None:
    with pytest.raises(PolicyFileError) as error:
        _load(params={"raise_timeout": {"factor": 0.5}, "rollback": {"alias": "live"}})

    message = str(error.value)
    assert "policy 'shop-errors' (policies[0]) field params.raise_timeout.factor" in message
    assert "field params.rollback.alias: Extra inputs are not permitted" in message


def test_a_policy_that_may_roll_back_needs_approval_unless_it_says_otherwise() -> None:
    may_roll_back = _load().policies[0]
    unattended = _load(approval="never").policies[0]
    no_rollback = _load(params={"rollback": None}).policies[0]

    assert may_roll_back.needs_approval() is True  # the approval flow must exist
    assert may_roll_back.needs_approval(get_action("lambda.rollback_alias")) is True
    assert may_roll_back.needs_approval(get_action("lambda.raise_timeout")) is False
    assert unattended.needs_approval() is False
    assert no_rollback.needs_approval() is False
    assert "lambda.rollback_alias" not in ApiDiagnose.choices(no_rollback.params)


def test_named_functions_get_exactly_what_each_follow_up_needs_on_them() -> None:
    permissions = ApiDiagnose.permissions(
        ApiTarget(api=API, functions=["api-handler", "checkout:live"])
    )

    arn = "arn:{partition}:lambda:{region}:{account}:function:"
    granted = {
        (a, r.removeprefix(arn)) for p in permissions for a in p.actions for r in p.resources
    }
    assert {r for _, r in granted} <= {
        "api-handler",
        "checkout",
        "checkout:live",
        "checkout:*",
        "*",
    }
    assert ("lambda:UpdateFunctionConfiguration", "api-handler") in granted
    # Through an alias: a version published from $LATEST, and the alias moved to it.
    assert ("lambda:UpdateFunctionConfiguration", "checkout") in granted
    assert ("lambda:PublishVersion", "checkout") in granted
    assert ("lambda:PublishVersion", "api-handler") not in granted  # no alias to move
    assert ("lambda:UpdateAlias", "checkout:live") in granted
    assert ("lambda:UpdateAlias", "api-handler") not in granted  # no alias to move
    assert ("cloudwatch:GetMetricData", "*") in granted
    assert not any(action.startswith("apigateway:") for action, _ in granted)


def test_the_diagnosis_reads_are_granted_even_without_the_follow_ups_that_grant_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_diagnose, "_registered", lambda name: None)

    permissions = ApiDiagnose.permissions(
        ApiTarget(api=API, functions=["api-handler", "checkout:live"])
    )

    arn = "arn:{partition}:lambda:{region}:{account}:function:"
    granted = {
        (action, resource.removeprefix(arn))
        for permission in permissions
        for action in permission.actions
        for resource in permission.resources
    }
    assert granted == {
        ("cloudwatch:GetMetricData", "*"),
        ("lambda:GetFunctionConcurrency", "api-handler"),
        ("lambda:GetFunctionConfiguration", "api-handler"),
        ("lambda:GetFunctionConcurrency", "checkout"),
        ("lambda:ListVersionsByFunction", "checkout"),
        ("lambda:GetAlias", "checkout"),
        ("lambda:GetAlias", "checkout:live"),
    }


def test_discovered_functions_mean_any_function_and_reading_the_api() -> None:
    permissions = ApiDiagnose.permissions(None)

    by_action = {a: p for p in permissions for a in p.actions}
    assert by_action["apigateway:GET"].resources == (
        "arn:{partition}:apigateway:{region}::/restapis",
        "arn:{partition}:apigateway:{region}::/restapis/*",
        "arn:{partition}:apigateway:{region}::/apis",
        "arn:{partition}:apigateway:{region}::/apis/*",
    )
    update = by_action["lambda:UpdateFunctionConfiguration"]
    assert update.resources == ("arn:{partition}:lambda:{region}:{account}:function:*",)
    assert update.why_wildcard == (
        "lambda.raise_timeout: the functions are found from the API's integrations at run time"
    )


def test_the_window_is_what_the_alarm_evaluated_and_at_least_min_window() -> None:
    end = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    evaluated = json.dumps({"startDate": "2026-01-05T11:50:00.000+0000"})
    alarm = AlarmDetail.model_validate(
        {
            "alarmName": ALARM,
            "state": {"value": "ALARM", "timestamp": end.isoformat(), "reasonData": evaluated},
        }
    )
    short = alarm.model_copy(update={"state": alarm.state.model_copy(update={"reason_data": None})})

    assert ApiDiagnose(ApiTarget(api=API), _params(), alarm)._window() == (
        end - timedelta(minutes=10),
        end,
    )
    assert ApiDiagnose(ApiTarget(api=API), _params(), short)._window() == (
        end - timedelta(minutes=5),
        end,
    )


# --- helpers --------------------------------------------------------------------------------


def _params(**params: Any) -> ApiDiagnoseParams:
    return ApiDiagnoseParams.model_validate(params)


def _diagnose(
    alarm_at: datetime | None = None,
    target: ApiTarget | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    detail = AlarmDetail.model_validate(_event(alarm_at)["detail"])
    return ApiDiagnose(target or ApiTarget(api=API), _params(**(params or {})), detail).diagnose()


@pytest.mark.usefixtures("aws")
def test_a_version_raise_timeout_published_is_no_deploy_to_roll_back() -> None:
    create_function("checkout", timeout=3)
    _alias_moved_to_version_2()

    # Version 2 is the one lambda.raise_timeout published (the same code, more time).
    def ours(parsed: dict[str, Any], **_: Any) -> None:
        for version in parsed.get("Versions", []):
            if version["Version"] == "2":
                version["Description"] = "autoremediate: timeout 5 s, memory 128 MB for alias live"

    client("lambda").meta.events.register("after-call.lambda.ListVersionsByFunction", ours)
    _rest_api({"checkout": "checkout:live"})
    alarm_at = datetime.now(UTC) + timedelta(minutes=5)
    _errors_since_the_move(alarm_at)

    diagnosis = _diagnose(alarm_at)

    assert diagnosis.action != "lambda.rollback_alias"
    assert "version_published_at" not in diagnosis.figures["checkout:live"]
    assert diagnosis.figures["checkout:live"]["version_by"].startswith("lambda.raise_timeout")
