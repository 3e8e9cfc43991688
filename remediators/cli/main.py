"""The `remediate` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from remediators.core.errors import AutoremediateError

__all__ = ["main"]

EXIT_OK, EXIT_EXPECTATIONS_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        status: int = args.run(args)
    except AutoremediateError as error:
        print(f"remediate: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediate",
        description="autoremediate: CloudWatch alarms fix what runbooks used to fix by hand.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    simulate = commands.add_parser(
        "simulate",
        help="run scenarios on a local AWS (moto): real rules, real handlers",
        description="Deploy the stack into a local AWS (moto on 127.0.0.1), create the "
        "scenario's resources and alarms, fire them, and show what the deployed remediator "
        "does. Exit status: 0 expectations hold, 1 they do not, 2 bad input.",
        epilog="examples:\n  remediate simulate --list\n  remediate simulate throttled-table\n"
        "  remediate simulate --all --json\n  remediate simulate my-scenario.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument("scenarios", nargs="*", metavar="NAME|PATH.yaml")
    simulate.add_argument("--list", action="store_true", help="list the built-in scenarios")
    simulate.add_argument("--all", action="store_true", help="run every built-in scenario")
    simulate.add_argument("--json", action="store_true", help="print one JSON report")
    simulate.add_argument(
        "--verbose", "-v", action="store_true", help="show notification texts and function logs"
    )
    simulate.add_argument(
        "--unused-permissions",
        action="store_true",
        help="then list, per role of the deployed functions, what it grants that no call of "
        "the scenarios used",
    )
    simulate.set_defaults(run=_simulate)

    history = commands.add_parser(
        "history",
        help="list audit records of a deployed stack (your AWS credentials)",
        epilog="examples:\n  remediate history --since 1d\n"
        "  remediate history --resource dynamodb:table/orders --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument("--resource", help="only this target, e.g. dynamodb:table/orders")
    history.add_argument("--since", default="1d", help="how far back: 30m, 6h, 7d (default 1d)")
    history.add_argument("--json", action="store_true", help="print the records as JSON")
    history.add_argument("--stack", default="Autoremediate", help="stack name")
    history.set_defaults(run=_history)

    revert = commands.add_parser(
        "revert",
        help="restore the before-state of an applied action (your AWS credentials)",
        description="Restore what an applied action changed, through the action's revert. "
        "Refuses when the resource changed since the action, unless --force. The revert is "
        "itself audited and notified.",
        epilog="example:\n  remediate revert 832b83bb-6f7f-4ff5-b22b-bc006b9ed37f",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    revert.add_argument("event_id", metavar="EVENT_ID", help="the action's event id (history)")
    revert.add_argument("--force", action="store_true", help="revert even if changed since")
    revert.add_argument("--stack", default="Autoremediate", help="stack name")
    revert.set_defaults(run=_revert)

    letters = commands.add_parser(
        "dead-letters",
        help="list events in the dead-letter queues, or replay them (your AWS credentials)",
        description="Events land in a dead-letter queue when EventBridge cannot deliver them "
        "or the remediator still fails after Lambda's retries. List them with the error, or "
        "--replay them to the remediator once the cause is fixed (an event that already "
        "acted does not act again).",
        epilog="examples:\n  remediate dead-letters\n  remediate dead-letters --replay",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    letters.add_argument("--replay", action="store_true", help="replay and remove them")
    letters.add_argument("--stack", default="Autoremediate", help="stack name")
    letters.set_defaults(run=_dead_letters)

    approvals = commands.add_parser(
        "approvals",
        help="list pending approvals, or approve or reject one (your AWS credentials)",
        description="Changes that need approval wait in the approval flow until an operator "
        "decides, from the links in the approval email or here (recorded as your IAM "
        "identity). A decision works once, before the approval's deadline.",
        epilog="examples:\n  remediate approvals list\n  remediate approvals approve ID\n"
        "  remediate approvals reject ID",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    approvals.add_argument("verb", choices=["list", "approve", "reject"])
    approvals.add_argument("approval_id", nargs="?", metavar="ID", help="for approve/reject")
    approvals.add_argument("--all", action="store_true", help="list decided ones too")
    approvals.add_argument("--stack", default="Autoremediate", help="stack name")
    approvals.set_defaults(run=_approvals)

    restore = commands.add_parser(
        "restore",
        help="restore a DynamoDB table from backup into a new table (asks for approval twice)",
        description="Start the restore flow of the table's dynamodb.restore_from_backup "
        "policy: find the backup, ask for approval, restore into <table>-restored-<time>, "
        "re-apply PITR, TTL, tags and autoscaling, verify, ask again, then point the "
        "application's setting at the new table. The old table is never deleted.",
        epilog="examples:\n  remediate restore orders\n"
        "  remediate restore orders --pitr-latest\n"
        "  remediate restore orders --backup arn:aws:dynamodb:...:table/orders/backup/0169...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    restore.add_argument("table")
    source = restore.add_mutually_exclusive_group()
    source.add_argument("--backup", metavar="ARN", help="this backup (default: the latest one)")
    source.add_argument(
        "--pitr-latest", action="store_true", help="the latest restorable point in time"
    )
    restore.add_argument("--stack", default="Autoremediate", help="stack name")
    restore.set_defaults(run=_restore)

    explain = commands.add_parser(
        "explain",
        help="which rule and policy an event matches, and what would happen (a dry run)",
        description="Match an EventBridge event against the deployed stack's rules and the "
        "policy file, then find what the remediator would do with reads only: kill switch, "
        "cooldown, circuit breaker, and the action's plan. Nothing is changed. Without "
        "--simulate it reads the account with your credentials; with --simulate, a local AWS "
        "where the stack is deployed from the policy file.",
        epilog="examples:\n  remediate explain event.json\n"
        "  remediate explain event.json --policy remediation.yaml --simulate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("event", metavar="EVENT.json", type=Path)
    explain.add_argument("--policy", type=Path, default=Path("remediation.yaml"))
    explain.add_argument("--simulate", action="store_true", help="against a local AWS (moto)")
    explain.add_argument("--stack", default="Autoremediate", help="stack name")
    explain.set_defaults(run=_explain)

    validate = commands.add_parser(
        "validate",
        help="validate a policy file exactly as `cdk synth` does",
        epilog="example:\n  remediate validate remediation.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("file", nargs="?", default="remediation.yaml")
    validate.set_defaults(run=_validate)
    return parser


def _explain(args: argparse.Namespace) -> int:
    import remediators.actions  # noqa: F401  (registers the actions)
    from remediators.cli.explain import explain

    print(explain(args.event, args.policy, args.stack, simulate=args.simulate))
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    import remediators.actions  # noqa: F401  (registers the actions)
    from remediators.core.policy import load_policy_file

    policy_file = load_policy_file(args.file)
    print(f"{args.file}: valid, {len(policy_file.policies)} policies")
    for policy in policy_file.policies:
        target = policy.target.resource_key if policy.target else "target from the alarm"
        print(f"  {policy.name}: alarm {policy.alarm.describe()} -> {policy.action} ({target})")
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    from remediators.cli.operator import parse_since
    from remediators.core.operations import deployed_settings, format_history, history

    since = parse_since(args.since)
    records = history(deployed_settings(args.stack), since, args.resource)
    print(format_history(records, as_json=args.json))
    return EXIT_OK


def _revert(args: argparse.Namespace) -> int:
    import remediators.actions  # noqa: F401  (registers the actions)
    from remediators.core.operations import deployed_settings, revert_action

    record = revert_action(deployed_settings(args.stack), args.event_id, force=args.force)
    print(f"reverted {args.event_id} as {record.event_id}:")
    for change in record.changes:
        print(f"  {change}")
    return EXIT_OK


def _approvals(args: argparse.Namespace) -> int:
    from remediators.cli.operator import format_approvals
    from remediators.core.operations import decide_approval, list_approvals

    if args.verb == "list":
        print(format_approvals(list_approvals(args.stack, everything=args.all)))
        return EXIT_OK
    if not args.approval_id:
        print(f"remediate approvals {args.verb}: give the approval ID", file=sys.stderr)
        return EXIT_BAD_INPUT
    decision = decide_approval(args.stack, args.approval_id, args.verb)
    print(f"{args.verb}d {decision.approval_id} at {decision.decided_at:%Y-%m-%d %H:%M:%S} UTC")
    return EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    from remediators.core.operations import start_restore

    event_id, execution = start_restore(
        args.stack, args.table, args.backup, True if args.pitr_latest else None
    )
    print(f"restore {event_id} of {args.table} started: {execution}")
    print("approve it from the email, or: remediate approvals list")
    print(f"follow it with: remediate history --resource dynamodb:table/{args.table}")
    return EXIT_OK


def _dead_letters(args: argparse.Namespace) -> int:
    from remediators.core.operations import dead_letters, handler_functions, replay

    letters = dead_letters(args.stack, hold=args.replay)
    for letter in letters:
        detail = letter.event.get("detail", {}) if isinstance(letter.event, dict) else {}
        print(
            f"{letter.queue:9} {letter.event.get('id', '?')}  alarm "
            f"{detail.get('alarmName', '?')}: {letter.error or 'no error recorded'}"
        )
    if args.replay and letters:
        count = replay(letters, handler_functions(args.stack))
        print(f"replayed {count} events")
    elif not letters:
        print("no dead letters")
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    from remediators.simulator.scenario import built_in_scenarios, load_scenario

    built_in = built_in_scenarios()
    if args.list:
        for name, path in built_in.items():
            print(f"{name:28} {load_scenario(path).description}")
        return EXIT_OK
    if args.all == bool(args.scenarios):
        print("remediate simulate: give scenario names or paths, or --all", file=sys.stderr)
        return EXIT_BAD_INPUT
    paths = (
        list(built_in.values())
        if args.all
        else [_scenario_path(s, built_in) for s in args.scenarios]
    )
    scenarios = [(load_scenario(path), path) for path in paths]

    import remediators.actions  # noqa: F401  (registers the actions)
    from remediators.simulator.local_aws import local_aws
    from remediators.simulator.permission_use import unused_permissions
    from remediators.simulator.report import render_json, render_text
    from remediators.simulator.runner import Simulator

    reports = []
    with local_aws() as aws:
        simulator = Simulator(aws)
        for scenario, path in scenarios:
            report = simulator.run(scenario, str(path))
            reports.append(report)
            if not args.json:
                print(render_text(report, verbose=args.verbose), flush=True)
    if args.json:
        print(render_json(reports))
    elif len(reports) > 1:
        passed = sum(report.passed for report in reports)
        print(f"{passed}/{len(reports)} scenarios passed")
    if args.unused_permissions and not args.json:
        print("\nGranted, and used by no call of these scenarios:")
        for role, grants in unused_permissions(reports).items():
            print(f"  {role}")
            print("\n".join(f"    {grant}" for grant in grants))
    return EXIT_OK if all(report.passed for report in reports) else EXIT_EXPECTATIONS_FAILED


def _scenario_path(name: str, built_in: dict[str, Path]) -> Path:
    from remediators.simulator.scenario import ScenarioError

    if name in built_in:
        return built_in[name]
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    raise ScenarioError(
        f"no built-in scenario {name!r} and no such file; built-in: {', '.join(built_in)}"
    )


if __name__ == "__main__":
    sys.exit(main())
