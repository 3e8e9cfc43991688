"""Build the CDK app from a policy file, with cdk-nag's AwsSolutions checks at synth."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

import remediators.actions  # noqa: F401  (declares the actions by name; each loads when first needed)
from remediators.core.policy import PolicyFile, load_policy_file
from stacks import names
from stacks.remediation_stack import RemediationStack

__all__ = ["DEFAULT_POLICY_FILE", "build_app", "build_stack"]

DEFAULT_POLICY_FILE = "remediation.yaml"


def build_stack(app: App, policy_file: PolicyFile) -> RemediationStack:
    """Add the autoremediate stack for `policy_file` to `app` (account/region from the CLI)."""
    stack = RemediationStack(
        app,
        names.STACK_NAME,
        policy_file=policy_file,
        env=Environment(account=None, region=None),
    )
    return stack


def build_app(policy_path: str | Path | None = None, outdir: str | None = None) -> App:
    """The app with one stack built from a policy file: `policy_path`, else the context value
    `policy` (`cdk synth -c policy=PATH`), else `remediation.yaml`.

    Raises PolicyFileError (naming the file, policy and field) for a bad policy file.
    """
    # CloudFormation's own template rules (e.g. circular dependencies) fail synth, not deploy.
    context = {"@aws-cdk/core:validateAgainstDefaultRules": True}
    app = App(outdir=outdir, context=context) if outdir else App(context=context)
    policy_file = load_policy_file(
        policy_path or app.node.try_get_context("policy") or DEFAULT_POLICY_FILE
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    build_stack(app, policy_file)
    return app
