"""A DynamoDB table and a Lambda function hold at most 50 tags of their users'.

AWS, DynamoDB: "Each DynamoDB table can have only one tag with the same key. If you try to add
an existing tag (same key), the existing tag value is updated to the new value." ... "The
maximum number of tags per resource is 50." ... "AWS-assigned tag names and values are
automatically assigned the aws: prefix, which you can't assign. AWS-assigned tag names don't
count toward the tag limit of 50."
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TaggingRestrictions.html
AWS, Lambda: "Maximum number of tags per resource: 50" ... "Tags with this prefix [aws:] do not
count against your tags per resource limit."
https://docs.aws.amazon.com/lambda/latest/dg/configuration-tags.html#configuration-tags-restrictions

So the count is the resource's tags now plus the keys the call adds (a key it already has is
overwritten, not added), `aws:` keys left out; TagResource and the Tags of CreateTable and
CreateFunction are refused past 50 (RestoreTableFromBackup and RestoreTableToPointInTime take no
tags: a restored table is tagged by TagResource).

The errors, which neither service documents for this case:
- DynamoDB: ValidationException "Number of Tags exceed the current limit for the provided
  ResourceArn" (HTTP 400), for TagResource and CreateTable alike (the table is then not
  created). ScyllaDB's DynamoDB-compatible Alternator answers so
  (https://github.com/scylladb/scylladb/blob/master/alternator/executor.cc), and its tests, which
  are written to pass against DynamoDB itself (`--aws`), expect ValidationException for 20 new
  tags on 40 and for CreateTable with 100
  (https://github.com/scylladb/scylladb/blob/master/test/alternator/test_tag.py). Not
  LimitExceededException, which the API reference lists for TagResource (for concurrent table
  operations).
- Lambda: InvalidParameterValueException "Number of tags exceeds resource tag limit." (HTTP
  400), for TagResource (51 at once, or one more on 50) and CreateFunction, as LocalStack's
  tests recorded against AWS on 2025-11-25
  (https://github.com/localstack/localstack/blob/main/tests/aws/services/lambda_/test_lambda_api.snapshot.json,
  `TestLambdaTags::test_tag_limits`; before November 2023 the message said "function tag limit").

moto keeps any number of tags (and its DynamoDB lists a key tagged again twice, where DynamoDB
overwrites it: the rule counts keys). The rule reads the resource's tags through a session of
its own (the rule's read is no call of the caller's: its role, the calls a test counts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from remediators.simulator.fidelity import Caller, Readers, Refusal, api_params, error_response

__all__ = ["DYNAMODB_REFUSAL", "LAMBDA_REFUSAL", "MAX_TAGS", "RULE", "TagsPerResource"]

MAX_TAGS = 50
DYNAMODB_REFUSAL = Refusal(
    "ValidationException", "Number of Tags exceed the current limit for the provided ResourceArn"
)
LAMBDA_REFUSAL = Refusal(
    "InvalidParameterValueException", "Number of tags exceeds resource tag limit."
)

# The tag keys a call adds, and where the resource's own tags are read (None: a new resource).
_Keys = Callable[[dict[str, Any]], Iterable[str]]
_Existing = Callable[[dict[str, Any], str, Readers], Iterable[str]] | None


class TagsPerResource:
    name = "at-most-50-user-tags-per-table-and-function"
    doc = (
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TaggingRestrictions.html"
    )

    def register(self, events: Any, caller: Caller) -> None:
        readers = Readers()
        checked: list[tuple[str, _Keys, _Existing, Refusal]] = [
            ("dynamodb.TagResource", _dynamodb_keys, _dynamodb_tags, DYNAMODB_REFUSAL),
            ("dynamodb.CreateTable", _dynamodb_keys, None, DYNAMODB_REFUSAL),
            ("lambda.TagResource", _lambda_keys, _lambda_tags, LAMBDA_REFUSAL),
            ("lambda.CreateFunction", _lambda_keys, None, LAMBDA_REFUSAL),
        ]
        for operation, keys, existing, refusal in checked:
            events.register(f"before-call.{operation}", _check(keys, existing, refusal, readers))


def _check(
    keys: _Keys, existing: _Existing, refusal: Refusal, readers: Readers
) -> Callable[..., Any]:
    def check(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        request = api_params(context)
        added = set(keys(request))
        if not added:
            return None
        region = str(context.get("client_region"))
        held = set(existing(request, region, readers)) if existing is not None else set()
        if len(_users(held | added)) <= MAX_TAGS:
            return None
        return error_response(refusal, str(params.get("url", "")))

    return check


def _users(keys: set[str]) -> set[str]:
    """The keys that count: not AWS's own (`aws:`, in any case)."""
    return {key for key in keys if not key.lower().startswith("aws:")}


def _dynamodb_keys(request: dict[str, Any]) -> Iterable[str]:
    return (str(tag["Key"]) for tag in request.get("Tags", []))


def _lambda_keys(request: dict[str, Any]) -> Iterable[str]:
    return (str(key) for key in request.get("Tags", {}))


def _dynamodb_tags(request: dict[str, Any], region: str, readers: Readers) -> list[str]:
    """The table's tag keys now (none if it cannot be read: the call will say why)."""
    from botocore.exceptions import ClientError

    dynamodb, keys = readers("dynamodb", region), []
    page: dict[str, Any] = {"ResourceArn": request.get("ResourceArn", "")}
    try:
        while True:
            answer = dynamodb.list_tags_of_resource(**page)
            keys += [str(tag["Key"]) for tag in answer.get("Tags", [])]
            if not answer.get("NextToken"):
                return keys
            page["NextToken"] = answer["NextToken"]
    except ClientError:
        return keys


def _lambda_tags(request: dict[str, Any], region: str, readers: Readers) -> list[str]:
    """The function's tag keys now (none if it cannot be read: the call will say why)."""
    from botocore.exceptions import ClientError

    try:
        answer = readers("lambda", region).list_tags(Resource=request.get("Resource", ""))
    except ClientError:
        return []
    return [str(key) for key in answer.get("Tags", {})]


RULE = TagsPerResource()
