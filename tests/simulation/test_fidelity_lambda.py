"""The Lambda fidelity rules: bare moto accepts the case, the rule refuses it as Lambda does
(the error code, message and status botocore raises), and what Lambda allows still goes
through."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.simulator import fidelity
from remediators.simulator.fidelity.lambda_update_in_progress import IN_PROGRESS_FOR
from remediators.simulator.resources import release_code
from tests.conftest import create_function

pytestmark = pytest.mark.usefixtures("aws")

ARN = "arn:aws:lambda:us-east-1:123456789012:function:checkout"


def _bare() -> boto3.Session:
    return boto3.Session(region_name="us-east-1")


def _strict() -> boto3.Session:
    session = boto3.Session(region_name="us-east-1")
    fidelity.install(session)
    return session


# --- an update is InProgress for a while ---------------------------------------------------


def test_bare_moto_takes_a_second_update_at_once() -> None:
    create_function("checkout")
    lambda_client = _bare().client("lambda")

    first = lambda_client.update_function_configuration(FunctionName="checkout", Timeout=5)
    lambda_client.update_function_configuration(FunctionName="checkout", Timeout=6)
    lambda_client.publish_version(FunctionName="checkout")

    assert first["LastUpdateStatus"] == "Successful"


@pytest.mark.parametrize("second", ["UpdateFunctionConfiguration", "UpdateFunctionCode",
                                    "PublishVersion"])  # fmt: skip
def test_an_update_in_progress_refuses_another_as_lambda_does(second: str) -> None:
    create_function("checkout")
    lambda_client = _strict().client("lambda")
    first = lambda_client.update_function_configuration(FunctionName="checkout", Timeout=5)

    calls = {
        "UpdateFunctionConfiguration": lambda: lambda_client.update_function_configuration(
            FunctionName="checkout", Timeout=6
        ),
        "UpdateFunctionCode": lambda: lambda_client.update_function_code(
            FunctionName=ARN, ZipFile=release_code(1)
        ),
        "PublishVersion": lambda: lambda_client.publish_version(FunctionName="checkout"),
    }
    with pytest.raises(ClientError) as refused:
        calls[second]()

    assert first["LastUpdateStatus"] == "InProgress"
    assert type(refused.value).__name__ == "ResourceConflictException"
    assert refused.value.response["Error"]["Message"] == (
        f"The operation cannot be performed at this time. An update is in progress for "
        f"resource: {ARN}"
    )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_reads_say_in_progress_until_the_update_settles() -> None:
    create_function("checkout")
    lambda_client = _strict().client("lambda")
    lambda_client.update_function_configuration(FunctionName="checkout", Timeout=5)

    during = lambda_client.get_function_configuration(FunctionName="checkout")
    whole = lambda_client.get_function(FunctionName="checkout")["Configuration"]
    clock.advance(IN_PROGRESS_FOR)
    settled = lambda_client.get_function_configuration(FunctionName="checkout")

    assert (during["LastUpdateStatus"], during["Timeout"]) == ("InProgress", 5)
    assert whole["LastUpdateStatus"] == "InProgress"
    assert settled["LastUpdateStatus"] == "Successful"
    lambda_client.update_function_configuration(FunctionName="checkout", Timeout=6)  # allowed


def test_another_function_and_a_published_version_are_not_updating() -> None:
    create_function("checkout")
    create_function("search")
    lambda_client = _strict().client("lambda")
    lambda_client.update_function_code(FunctionName="checkout", ZipFile=release_code(1))
    clock.advance(IN_PROGRESS_FOR)  # the rule keeps its state per session
    lambda_client.publish_version(FunctionName="checkout")
    lambda_client.update_function_configuration(FunctionName="checkout", Timeout=5)

    version = lambda_client.get_function_configuration(FunctionName="checkout", Qualifier="1")
    lambda_client.update_function_configuration(FunctionName="search", Timeout=5)

    assert version["LastUpdateStatus"] == "Successful"


# --- published versions are immutable ------------------------------------------------------


def _published(session: boto3.Session) -> None:
    create_function("checkout", timeout=3)
    lambda_client = session.client("lambda")
    lambda_client.update_function_code(FunctionName="checkout", ZipFile=release_code(1))
    clock.advance(IN_PROGRESS_FOR)  # the rule keeps its state per session
    lambda_client.publish_version(FunctionName="checkout")


def test_bare_moto_updates_a_published_version() -> None:
    _published(_bare())
    lambda_client = _bare().client("lambda")

    lambda_client.update_function_configuration(FunctionName="checkout:1", Timeout=30)

    version = lambda_client.get_function_configuration(FunctionName="checkout", Qualifier="1")
    assert version["Timeout"] == 30


@pytest.mark.parametrize("name", ["checkout:1", f"{ARN}:1"])
def test_a_published_version_refuses_an_update(name: str) -> None:
    _published(_strict())
    lambda_client = _strict().client("lambda")

    with pytest.raises(ClientError) as refused:
        lambda_client.update_function_configuration(FunctionName=name, Timeout=30)

    assert type(refused.value).__name__ == "InvalidParameterValueException"
    assert refused.value.response["Error"]["Message"] == (
        "Current operation does not support versions other than $LATEST"
    )
    version = lambda_client.get_function_configuration(FunctionName="checkout", Qualifier="1")
    assert version["Timeout"] == 3


def test_latest_is_updated_by_name_by_arn_and_by_its_qualifier() -> None:
    create_function("checkout", timeout=3)
    lambda_client = _strict().client("lambda")

    for name, timeout in (("checkout", 4), (ARN, 5), ("checkout:$LATEST", 6)):
        clock.advance(IN_PROGRESS_FOR)
        lambda_client.update_function_configuration(FunctionName=name, Timeout=timeout)

    assert lambda_client.get_function_configuration(FunctionName="checkout")["Timeout"] == 6


# --- PublishVersion's CodeSha256 is a precondition ----------------------------------------


def test_bare_moto_publishes_whatever_code_sha256_says() -> None:
    create_function("checkout")

    lambda_client = _bare().client("lambda")

    published = lambda_client.publish_version(FunctionName="checkout", CodeSha256="bm90IGl0")

    assert published["Version"] == "1"


def test_a_code_sha256_that_latest_does_not_have_is_refused() -> None:
    create_function("checkout")
    lambda_client = _strict().client("lambda")
    current = lambda_client.get_function_configuration(FunctionName="checkout")["CodeSha256"]

    with pytest.raises(ClientError) as refused:
        lambda_client.publish_version(FunctionName="checkout", CodeSha256="bm90IHRoaXMgY29kZQ==")

    assert type(refused.value).__name__ == "InvalidParameterValueException"
    assert refused.value.response["Error"]["Message"] == (
        f"CodeSHA256 (bm90IHRoaXMgY29kZQ==) is different from current CodeSHA256 in $LATEST "
        f"({current}). Please try again with the CodeSHA256 in $LATEST."
    )
    assert (
        lambda_client.list_versions_by_function(FunctionName="checkout")["Versions"][-1]["Version"]
        == "$LATEST"
    )


def test_latests_own_code_sha256_publishes() -> None:
    create_function("checkout")
    lambda_client = _strict().client("lambda")
    current = lambda_client.get_function_configuration(FunctionName="checkout")["CodeSha256"]

    assert (
        lambda_client.publish_version(FunctionName="checkout", CodeSha256=current)["Version"] == "1"
    )
