"""Synthesize the app for a policy file and deploy it into the local AWS as `cdk deploy` would.

`cdk deploy` uploads the file assets to the bootstrap bucket, then creates the stack through
CloudFormation. Here the same happens against moto, after doing what `cdk bootstrap` and AWS
itself would have done first: the assets bucket, the bootstrap version parameter, and the
public Powertools layer with its SSM parameter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3

import remediators
from remediators.simulator.local_aws import LocalAws

__all__ = [
    "AsyncInvokeSettings",
    "DeployedStack",
    "assets_bucket",
    "async_invoke_settings",
    "deploy",
    "synthesize",
]

_QUALIFIER = "hnb659fds"
_BOOTSTRAP_VERSION = "30"
_SOURCES = ("remediators", "stacks")
_SOURCE_ROOT = Path(remediators.__file__).resolve().parent.parent
_SYNTH_LIBRARIES = ("aws-cdk-lib", "constructs", "cdk-nag")
_DEFAULT_ASYNC_RETRIES = 2  # Lambda's default for asynchronous invocations
_UNSUPPORTED = re.compile(r"Tried to parse (\S+) but it's not supported")


@dataclass(frozen=True)
class DeployedStack:
    """What CloudFormation created: outputs, and physical ids by logical id."""

    name: str
    outputs: dict[str, str]
    resources: dict[str, str] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)
    # Resource types moto's CloudFormation skips (policies, subscriptions, ...).
    not_simulated: list[str] = field(default_factory=list)


def synthesize(policy_path: Path, cache_root: Path | None = None) -> Path:
    """Synthesize the app for `policy_path`; return the cloud assembly directory.

    Runs `app.py` as `cdk synth` does (a child process told the output folder and the policy
    through CDK_OUTDIR and CDK_CONTEXT_JSON), so nothing here imports the CDK. Synth takes
    seconds, so assemblies are cached by the policy file's content, the source of the code
    that is synthesized and shipped, and the CDK library versions.
    """
    root = cache_root or _cache_root()
    outdir = root / _fingerprint(policy_path)
    if (outdir / "manifest.json").exists():
        return outdir
    staging = outdir.with_name(outdir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, str(_SOURCE_ROOT / "app.py")],
        cwd=_SOURCE_ROOT,
        env={
            **os.environ,
            "CDK_OUTDIR": str(staging),
            "CDK_CONTEXT_JSON": json.dumps({"policy": str(policy_path.resolve())}),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"synth of {policy_path} failed:\n{result.stderr.strip()}")
    staging.rename(outdir)
    return outdir


def deploy(assembly: Path, aws: LocalAws) -> DeployedStack:
    """Deploy the assembly's one stack into the local AWS through CloudFormation."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    stack_name, artifact = next(
        (name, a)
        for name, a in manifest["artifacts"].items()
        if a["type"] == "aws:cloudformation:stack"
    )
    template_path = assembly / artifact["properties"]["templateFile"]
    template = json.loads(template_path.read_text())
    _bootstrap(aws)
    _publish_assets(assembly / f"{stack_name}.assets.json", aws)
    _publish_public_parameters(template, aws)
    cloudformation = boto3.client("cloudformation")
    moto_logger = logging.getLogger("moto")
    level = moto_logger.level
    moto_logger.setLevel(logging.ERROR)  # it logs each resource type it skips
    try:
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always")
            cloudformation.create_stack(
                StackName=stack_name,
                TemplateBody=json.dumps(template),
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
            )
            stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
            summaries = cloudformation.list_stack_resources(StackName=stack_name)
    finally:
        moto_logger.setLevel(level)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"stack {stack_name}: {stack['StackStatus']}")
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in summaries["StackResourceSummaries"]
    }
    _create_alarms(template, physical)
    _apply_topic_policies(template, physical, aws)
    _create_function_urls(template, physical)
    _hand_state_machines_to_interpreter(aws)
    _store_key_policies_as_text(aws)
    _create_generated_secrets(template)
    return DeployedStack(
        name=stack_name,
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        resources=physical,
        template=template,
        not_simulated=sorted({m[1] for w in skipped if (m := _UNSUPPORTED.search(str(w.message)))}),
    )


@dataclass(frozen=True)
class AsyncInvokeSettings:
    """How Lambda handles a function's failed async invocations."""

    retries: int
    dead_letter_arn: str | None


def async_invoke_settings(stack: DeployedStack, aws: LocalAws) -> dict[str, AsyncInvokeSettings]:
    """Retries and dead-letter queue per deployed function name, from the template.

    moto's Lambda models neither DeadLetterConfig nor EventInvokeConfig, so the simulator
    (standing in for the Lambda service) takes them from what was deployed.
    """
    resources = stack.template["Resources"]
    retries = {
        config["Properties"]["FunctionName"]["Ref"]: config["Properties"].get(
            "MaximumRetryAttempts", _DEFAULT_ASYNC_RETRIES
        )
        for config in resources.values()
        if config["Type"] == "AWS::Lambda::EventInvokeConfig"
    }
    settings = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        target = resource["Properties"].get("DeadLetterConfig", {}).get("TargetArn", {})
        queue_id = target.get("Fn::GetAtt", [None])[0] if isinstance(target, dict) else None
        queue_arn = None
        if queue_id in stack.resources:
            queue_name = stack.resources[queue_id].rsplit("/", 1)[-1]
            queue_arn = f"arn:aws:sqs:{aws.region}:{aws.account_id}:{queue_name}"
        settings[stack.resources[logical_id]] = AsyncInvokeSettings(
            retries=int(retries.get(logical_id, _DEFAULT_ASYNC_RETRIES)), dead_letter_arn=queue_arn
        )
    return settings


def _create_alarms(template: dict[str, Any], physical: dict[str, str]) -> None:
    """moto's CloudFormation skips alarms: create the template's alarms through the API, as
    CloudFormation would, with their references (a function's name, a queue's name, a topic's
    ARN) resolved to what was deployed. An alarm that refers to anything else is left out."""
    cloudwatch = boto3.client("cloudwatch")
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        try:
            properties = _resolved(resource["Properties"], physical)
        except LookupError:
            continue
        cloudwatch.put_metric_alarm(**properties)
        cloudwatch.set_alarm_state(
            AlarmName=properties["AlarmName"], StateValue="OK", StateReason="deployed"
        )


def _apply_topic_policies(
    template: dict[str, Any], physical: dict[str, str], aws: LocalAws
) -> None:
    """moto's CloudFormation skips topic policies: set each on its topics, as CloudFormation
    would (it replaces the topic's default policy)."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": aws.region, "AWS::AccountId": aws.account_id}
    sns = boto3.client("sns")
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::SNS::TopicPolicy":
            continue
        properties = _resolved(resource["Properties"], {**physical, **pseudo})
        for topic in properties["Topics"]:
            sns.set_topic_attributes(
                TopicArn=topic,
                AttributeName="Policy",
                AttributeValue=json.dumps(properties["PolicyDocument"]),
            )


def _resolved(value: Any, physical: dict[str, str]) -> Any:
    """`value` with each `Ref` (a physical id: a function's name, a topic's ARN; or a pseudo
    parameter `physical` holds), a queue's `Fn::GetAtt QueueName` and `Fn::Join` replaced;
    LookupError for any other intrinsic."""
    if isinstance(value, list):
        return [_resolved(item, physical) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and value["Ref"] in physical:
        return physical[value["Ref"]]
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return str(separator).join(str(_resolved(part, physical)) for part in parts)
    if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][1] == "QueueName":
        return physical[value["Fn::GetAtt"][0]].rsplit("/", 1)[-1]  # a queue's id is its URL
    if any(key == "Ref" or key.startswith("Fn::") for key in value):
        raise LookupError(f"cannot resolve {value}")
    return {key: _resolved(item, physical) for key, item in value.items()}


def _create_function_urls(template: dict[str, Any], physical: dict[str, str]) -> None:
    """moto's CloudFormation skips function URLs: create them through the API."""
    lambda_client = boto3.client("lambda")
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Url":
            continue
        properties = resource["Properties"]
        function_id = properties["TargetFunctionArn"]["Fn::GetAtt"][0]
        lambda_client.create_function_url_config(
            FunctionName=physical[function_id], AuthType=properties["AuthType"]
        )


def _hand_state_machines_to_interpreter(aws: LocalAws) -> None:
    """moto's CloudFormation files state machines where only the recording backend sees them;
    executions run on its interpreter backend. Create each deployed state machine there too,
    with the definition, role, logging and tracing CloudFormation resolved."""
    from moto.stepfunctions.models import stepfunctions_backends
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    deployed = stepfunctions_backends[aws.account_id][aws.region]
    interpreter = stepfunctions_parser_backends[aws.account_id][aws.region]
    for machine in deployed.state_machines:
        interpreter.create_state_machine(
            name=machine.name,
            definition=machine.definition,
            roleArn=machine.roleArn,
            loggingConfiguration=machine.loggingConfiguration,  # type: ignore[arg-type]
            tracingConfiguration=machine.tracingConfiguration,  # type: ignore[arg-type]
        )


def _store_key_policies_as_text(aws: LocalAws) -> None:
    """moto's CloudFormation keeps a KMS key's KeyPolicy as the object the template gives, and
    its KMS then fails every call on the key (it parses the policy as JSON text): store it as
    text, as KMS keeps it."""
    from moto.kms.models import kms_backends

    for key in kms_backends[aws.account_id][aws.region].keys.values():
        if isinstance(key.policy, dict):
            key.policy = json.dumps(key.policy)


def _create_generated_secrets(template: dict[str, Any]) -> None:
    """moto's CloudFormation skips secrets: create the named ones with a generated value, as
    GenerateSecretString would (random letters and digits of the requested length)."""
    secretsmanager = boto3.client("secretsmanager")
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::SecretsManager::Secret":
            continue
        properties = resource["Properties"]
        length = int(properties.get("GenerateSecretString", {}).get("PasswordLength", 32))
        alphabet = string.ascii_letters + string.digits
        secretsmanager.create_secret(
            Name=properties["Name"],
            SecretString="".join(secrets.choice(alphabet) for _ in range(length)),
        )


def assets_bucket(aws: LocalAws) -> str:
    """The bootstrap bucket that `cdk bootstrap` creates."""
    return f"cdk-{_QUALIFIER}-assets-{aws.account_id}-{aws.region}"


def _bootstrap(aws: LocalAws) -> None:
    # Outside us-east-1 S3 wants the bucket's region said (CreateBucketConfiguration).
    location = {} if aws.region == "us-east-1" else {"LocationConstraint": aws.region}
    boto3.client("s3").create_bucket(
        Bucket=assets_bucket(aws),
        **({"CreateBucketConfiguration": location} if location else {}),
    )
    boto3.client("ssm").put_parameter(
        Name=f"/cdk-bootstrap/{_QUALIFIER}/version", Value=_BOOTSTRAP_VERSION, Type="String"
    )


def _publish_assets(assets_manifest: Path, aws: LocalAws) -> None:
    """Upload each file asset where the manifest says, zipping directories as the CLI does."""
    manifest = json.loads(assets_manifest.read_text())
    s3 = boto3.client("s3")
    for asset in manifest["files"].values():
        source = assets_manifest.parent / asset["source"]["path"]
        body = (
            zip_directory(source) if asset["source"]["packaging"] == "zip" else source.read_bytes()
        )
        for destination in asset["destinations"].values():
            s3.put_object(Bucket=assets_bucket(aws), Key=destination["objectKey"], Body=body)


def zip_directory(directory: Path) -> bytes:
    """A deterministic zip of a directory's files (paths relative to it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(str(path.relative_to(directory)), (1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _publish_public_parameters(template: dict[str, Any], aws: LocalAws) -> None:
    """Play AWS's part: publish the Powertools layer and its public `/aws/service/` parameter.

    Names under /aws are reserved for AWS, so PutParameter refuses them; the parameter goes
    straight into moto's SSM backend, which this process hosts.
    """
    from moto.ssm.models import Parameter, ssm_backends

    layer_zip = io.BytesIO()
    with zipfile.ZipFile(layer_zip, "w") as archive:
        archive.writestr("python/README.txt", "Powertools for AWS Lambda (Python), simulated")
    ssm_backend = ssm_backends[aws.account_id][aws.region]
    for parameter in template.get("Parameters", {}).values():
        name = parameter.get("Default", "")
        if not name.startswith("/aws/service/powertools/"):
            continue
        arch, runtime = name.split("/")[4:6]
        layer = boto3.client("lambda").publish_layer_version(
            LayerName=f"AWSLambdaPowertoolsPythonV3-{runtime.replace('.', '')}-{arch}",
            Content={"ZipFile": layer_zip.getvalue()},
            CompatibleRuntimes=[runtime],
        )
        ssm_backend._parameters[name].append(
            Parameter(  # type: ignore[abstract]
                account_id=aws.account_id,
                name=name,
                value=layer["LayerVersionArn"],
                parameter_type="String",
                description="Powertools for AWS Lambda (Python) layer",
                allowed_pattern=None,
                keyid=None,
                last_modified_date=dt.datetime.now(dt.UTC),
                version=1,
                data_type="text",
            )
        )


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autoremediate" / "synth"


def _fingerprint(policy_path: Path) -> str:
    digest = hashlib.sha256(policy_path.read_bytes())
    for library in _SYNTH_LIBRARIES:
        digest.update(f"{library}=={metadata.version(library)}".encode())
    for path in [_SOURCE_ROOT / "app.py"] + [
        p for package in _SOURCES for p in sorted((_SOURCE_ROOT / package).rglob("*.py"))
    ]:
        digest.update(str(path.relative_to(_SOURCE_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]
