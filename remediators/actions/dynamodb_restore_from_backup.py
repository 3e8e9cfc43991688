"""`dynamodb.restore_from_backup`: restore a table into a new one, check it, and point the
application at it (runbook "Restore from backup").

A restore has many steps and two decisions, so it runs in the restore state machine
(stacks/constructs/restore_flow.py); the remediator only plans it and starts the flow. This
module does the AWS work of each step:

    plan (find the backup) -> [approval] -> start_restore -> table_status (until ACTIVE)
    -> reapply (what a restore does not copy: PITR, TTL, tags, autoscaling) -> verify
    -> [approval] -> cut_over (the SSM parameter or Lambda environment variable the
    application reads its table name from)         on any failure: discard

The source table is never changed or deleted. Only tables named `<table>-restored-*` are ever
deleted (the IAM grant says so too), and never one the application's setting points at.

One module per action (the registry's rule), hence its length: every step of the flow is this
action's AWS work, and its permissions are declared next to the calls that need them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from remediators.actions.dynamodb_scale_capacity import SCALING_ALARMS, TableTarget
from remediators.actions.lambda_raise_timeout import settled_configuration
from remediators.core import clock
from remediators.core.aws import client
from remediators.core.errors import ActionError
from remediators.core.events import AlarmDetail
from remediators.core.registry import Action, Params, Permission, Plan, register

__all__ = [
    "KILL_SWITCH_OFF",
    "CutoverSetting",
    "KillSwitchOff",
    "RestoreFromBackup",
    "RestoreJob",
    "RestoreParams",
    "restored_name",
]

_RESTORED_SUFFIX = "-restored-"
_MAX_TAGS = 50  # per table
_TABLE_ARN = "arn:{partition}:dynamodb:{region}:{account}:table/"


class CutoverSetting(BaseModel):
    """Where the application reads its table name: an SSM parameter, or an environment
    variable of a Lambda function."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameter: str | None = Field(
        default=None, min_length=1, max_length=1011, pattern=r"^/?[a-zA-Z0-9_.\-/]+$"
    )
    function: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$"
    )
    variable: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[a-zA-Z][a-zA-Z0-9_]*$"
    )

    @model_validator(mode="after")
    def _one_setting(self) -> CutoverSetting:
        if (self.parameter is None) == (self.function is None):
            raise ValueError("name either `parameter` or `function` (with `variable`)")
        if (self.function is None) != (self.variable is None):
            raise ValueError("`function` and `variable` go together")
        return self

    def __str__(self) -> str:
        if self.parameter is not None:
            return f"SSM parameter {self.parameter}"
        return f"variable {self.variable} of function {self.function}"


class RestoreParams(Params):
    """Where to restore from, what to cut over, and how long to wait for the new table."""

    source: Literal["latest_backup", "pitr_latest"] = "latest_backup"
    cutover: CutoverSetting = Field(
        description="where the application reads its table name: a restore is of no use until "
        "the application reads the copy, and only the policy knows where that setting is"
    )
    poll_seconds: int = Field(default=30, ge=1, le=3600)
    # Large tables take hours to restore: 240 polls of 30 s wait two hours. A Standard
    # workflow's history holds 25,000 events, about 9 per poll.
    max_polls: int = Field(default=240, ge=1, le=2_500)
    sample_keys: int = Field(default=20, ge=0, le=100)
    # A Scan of the copy counts its items; a huge copy is counted this far (Lambda's time).
    count_up_to: int = Field(default=200_000, ge=1, le=5_000_000)


class RestoreSource(BaseModel):
    """A backup, or the latest restorable point in time of the table's PITR."""

    model_config = ConfigDict(frozen=True)

    backup_arn: str | None = None
    created: datetime | None = None
    point_in_time: bool = False
    # Items in the table when the backup was taken (DynamoDB's figure), if known.
    expected_items: int | None = None

    def __str__(self) -> str:
        when = f" of {self.created:%Y-%m-%d %H:%M:%S} UTC" if self.created else ""
        if self.point_in_time:
            return f"its latest restorable point in time{when}"
        items = f", {self.expected_items} items" if self.expected_items is not None else ""
        return f"backup {self.backup_arn}{when}{items}"


class RestoreJob(BaseModel):
    """One restore in progress: what the flow's steps pass along (the state machine's $.job)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    policy: str
    table: str
    restored_table: str
    source: RestoreSource
    requested_by: str
    requested_at: datetime
    alarm: str = ""
    alarm_reason: str = ""
    # The source's settings a restore does not copy, read before restoring.
    source_settings: dict[str, Any] = Field(default_factory=dict)
    polls: int = 0
    table_status: str | None = None
    reapplied: list[str] = Field(default_factory=list)
    verification: dict[str, Any] | None = None
    # The application's setting before the cutover, and after it.
    setting_before: str | None = None
    setting_after: str | None = None


def restored_name(table: str, at: datetime) -> str:
    """`<table>-restored-<UTC timestamp>`: new, and recognizably a restore of `table`."""
    name = f"{table}{_RESTORED_SUFFIX}{at:%Y%m%d-%H%M%S}"
    if len(name) > 255:
        raise ActionError(f"table name {table!r} is too long for a restored copy's name")
    return name


@register
class RestoreFromBackup(Action[RestoreParams, TableTarget]):
    """Restore a table from backup into a new table, then cut the application over to it."""

    name: ClassVar[str] = "dynamodb.restore_from_backup"
    summary: ClassVar[str] = (
        "Restore a table from its latest backup or PITR into a new table; cut over on approval."
    )
    params_model = RestoreParams
    target_model = TableTarget
    # Always asked: the flow waits for an operator before the restore and before the cutover.
    risky: ClassVar[bool] = True
    flow: ClassVar[str | None] = "restore"

    @classmethod
    def permissions(cls, target: TableTarget | None) -> list[Permission]:
        """What planning needs (the remediator): read the table and find its backups."""
        table = target.table if target else "*"
        why = None if target else "the policy names no table: it is taken from the alarm"
        return [
            Permission(
                actions=("dynamodb:DescribeTable", "dynamodb:DescribeContinuousBackups"),
                resources=(_TABLE_ARN + table,),
                why_wildcard=why,
            ),
            Permission(
                actions=("dynamodb:DescribeBackup",),
                resources=(f"{_TABLE_ARN}{table}/backup/*",),
                why_wildcard="backup ARNs end in an id DynamoDB assigns",
            ),
            Permission(
                actions=("dynamodb:ListBackups",),
                resources=("*",),
                why_wildcard="ListBackups supports no resource-level permissions",
            ),
        ]

    @classmethod
    def flow_permissions(
        cls, target: TableTarget | None, params: RestoreParams
    ) -> list[Permission]:
        """What the restore flow's steps need, on the source, its backups, the restored
        copies and the application's setting."""
        table = target.table if target else "*"
        why = None if target else "the policy names no table: it is taken from the alarm"
        # Never `table/*`: a restore role must not be able to delete any other table.
        restored = f"{_TABLE_ARN}{table}{_RESTORED_SUFFIX}*"
        permissions = [
            *cls.permissions(target),
            Permission(
                # Never a Scan of the source: it is often the throttled table; its sampled keys
                # are looked up one by one.
                actions=(
                    "dynamodb:DescribeTimeToLive",
                    "dynamodb:ListTagsOfResource",
                    "dynamodb:RestoreTableToPointInTime",
                    "dynamodb:GetItem",
                ),
                resources=(_TABLE_ARN + table,),
                why_wildcard=why,
            ),
            Permission(
                actions=("dynamodb:RestoreTableFromBackup",),
                resources=(f"{_TABLE_ARN}{table}/backup/*",),
                why_wildcard="backup ARNs end in an id DynamoDB assigns",
            ),
            Permission(
                # A restore writes the new table's items with the caller's permissions.
                actions=(
                    "dynamodb:RestoreTableFromBackup",
                    "dynamodb:RestoreTableToPointInTime",
                    "dynamodb:BatchWriteItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:GetItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                    "dynamodb:DescribeTable",
                    "dynamodb:UpdateTable",
                    "dynamodb:UpdateContinuousBackups",
                    "dynamodb:UpdateTimeToLive",
                    "dynamodb:TagResource",
                    "dynamodb:DeleteTable",
                ),
                resources=(restored,),
                why_wildcard="a restored copy is named when the restore starts: "
                f"<table>{_RESTORED_SUFFIX}<timestamp>",
            ),
            Permission(
                actions=(
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                ),
                resources=(
                    "arn:{partition}:application-autoscaling:{region}:{account}:scalable-target/*",
                ),
                conditions=(
                    ("StringEquals", "application-autoscaling:service-namespace", "dynamodb"),
                ),
                why_wildcard="scalable-target ARNs end in a random id, unknown at deploy time; "
                "a condition limits the grant to DynamoDB's scalable targets",
            ),
            Permission(
                actions=(
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScalingPolicies",
                ),
                resources=("*",),
                why_wildcard="these Describe calls support no resource-level permissions",
            ),
            SCALING_ALARMS,
        ]
        cutover = params.cutover
        if cutover.parameter is not None:
            name = cutover.parameter.lstrip("/")
            permissions.append(
                Permission(
                    actions=("ssm:GetParameter", "ssm:PutParameter"),
                    resources=(f"arn:{{partition}}:ssm:{{region}}:{{account}}:parameter/{name}",),
                )
            )
        else:
            permissions.append(
                Permission(
                    actions=(
                        "lambda:GetFunctionConfiguration",
                        "lambda:UpdateFunctionConfiguration",
                    ),
                    resources=(
                        f"arn:{{partition}}:lambda:{{region}}:{{account}}:function:{cutover.function}",
                    ),
                )
            )
        return permissions

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> TableTarget | None:
        table = alarm.dimension("AWS/DynamoDB", "TableName")
        return TableTarget(table=table) if table else None

    # --- plan (the remediator, or the flow's first step) ---------------------------------

    def read(self) -> dict[str, Any]:
        """The source table (it may be gone: that is when a restore is needed most). The
        application's setting is the flow's to read (`read_setting`), not the planner's."""
        try:
            table = client("dynamodb").describe_table(TableName=self.target.table)["Table"]
            state: dict[str, Any] = {"table": self.target.table, "status": table["TableStatus"]}
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise ActionError.from_client_error(
                    f"DescribeTable {self.target.table}", error
                ) from error
            state = {"table": self.target.table, "status": "MISSING"}
        return state

    def comparable(self, state: dict[str, Any]) -> dict[str, Any]:
        """Nothing: a restore's progress is the flow's to check, step by step."""
        return {}

    def plan(self, backup_arn: str | None = None, point_in_time: bool | None = None) -> Plan:
        """Find what to restore from (the policy's `source`, unless a backup or PITR is asked
        for) and name the new table. No backup: nothing to do, escalated."""
        before = self.read()
        try:
            source = self.find_source(backup_arn, point_in_time)
        except _NoSource as missing:
            return Plan(before=before, skip_reason="no_backup", note=str(missing))
        restored = restored_name(self.target.table, self._started())
        return Plan(
            before=before,
            after={"restored_table": restored, "source": source.model_dump(mode="json")},
            changes=[
                f"restore {self.target.table} from {source} into a new table {restored}",
                f"then, on a second approval, point {self.params.cutover} at {restored}",
            ],
        )

    def apply(self, plan: Plan) -> None:
        raise ActionError("a restore runs in the restore flow: the remediator starts it")

    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        raise ActionError(
            "a restore is not reverted automatically: the source table was never changed; "
            f"point {self.params.cutover} back to {self.target.table} by hand if needed"
        )

    def _started(self) -> datetime:
        # A redelivered alarm event names the same table: the alarm's transition time.
        return self.alarm.state.timestamp if self.alarm else clock.now()

    def find_source(
        self, backup_arn: str | None = None, point_in_time: bool | None = None
    ) -> RestoreSource:
        """The backup or point in time to restore from."""
        if backup_arn is not None:
            return self._backup(backup_arn)
        use_pitr = self.params.source == "pitr_latest" if point_in_time is None else point_in_time
        if use_pitr:
            return self._point_in_time()
        latest: dict[str, Any] | None = None
        ddb = client("dynamodb")
        options: dict[str, Any] = {"TableName": self.target.table, "BackupType": "ALL"}
        while True:
            try:
                page = ddb.list_backups(**options)
            except ClientError as error:
                raise ActionError.from_client_error("ListBackups", error) from error
            for summary in page.get("BackupSummaries", []):
                if summary.get("BackupStatus") != "AVAILABLE":
                    continue
                if (
                    latest is None
                    or summary["BackupCreationDateTime"] > latest["BackupCreationDateTime"]
                ):
                    latest = summary
            if "LastEvaluatedBackupArn" not in page:
                break
            options["ExclusiveStartBackupArn"] = page["LastEvaluatedBackupArn"]
        if latest is None:
            raise _NoSource(f"{self.target.table} has no available backup")
        return self._backup(latest["BackupArn"])

    def _backup(self, backup_arn: str) -> RestoreSource:
        try:
            description = client("dynamodb").describe_backup(BackupArn=backup_arn)[
                "BackupDescription"
            ]
        except ClientError as error:
            if error.response["Error"]["Code"] == "BackupNotFoundException":
                raise _NoSource(f"backup {backup_arn} does not exist") from error
            raise ActionError.from_client_error(f"DescribeBackup {backup_arn}", error) from error
        details, source = description["BackupDetails"], description.get("SourceTableDetails", {})
        if source.get("TableName", self.target.table) != self.target.table:
            raise _NoSource(f"backup {backup_arn} is of table {source['TableName']}")
        if details["BackupStatus"] != "AVAILABLE":
            raise _NoSource(f"backup {backup_arn} is {details['BackupStatus']}")
        return RestoreSource(
            backup_arn=backup_arn,
            created=details["BackupCreationDateTime"],
            expected_items=source.get("ItemCount"),
        )

    def _point_in_time(self) -> RestoreSource:
        try:
            backups = client("dynamodb").describe_continuous_backups(TableName=self.target.table)[
                "ContinuousBackupsDescription"
            ]
        except ClientError as error:
            if error.response["Error"]["Code"] == "TableNotFoundException":
                raise _NoSource(f"{self.target.table} does not exist: no PITR") from error
            raise ActionError.from_client_error("DescribeContinuousBackups", error) from error
        pitr = backups.get("PointInTimeRecoveryDescription", {})
        if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
            raise _NoSource(f"{self.target.table} has no point-in-time recovery enabled")
        latest = pitr.get("LatestRestorableDateTime")
        return RestoreSource(point_in_time=True, created=latest)

    # --- the flow's steps -----------------------------------------------------------------

    def read_source_settings(self) -> dict[str, Any]:
        """What a restore does not copy, read from the source while it is there."""
        ddb, table = client("dynamodb"), self.target.table
        try:
            description = ddb.describe_table(TableName=table)["Table"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                return {"readable": False}
            raise
        pitr = ddb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
        ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        tags = _tags_of(description["TableArn"])
        units = ["table"] + [i["IndexName"] for i in description.get("GlobalSecondaryIndexes", [])]
        ids = [_resource_id(table, unit) for unit in units]
        scaling = client("application-autoscaling")
        targets = scaling.describe_scalable_targets(ServiceNamespace="dynamodb", ResourceIds=ids)
        policies = [
            policy
            for resource_id in ids
            for page in scaling.get_paginator("describe_scaling_policies").paginate(
                ServiceNamespace="dynamodb", ResourceId=resource_id
            )
            for policy in page.get("ScalingPolicies", [])
        ]
        stream = description.get("StreamSpecification") or {}
        return {
            "readable": True,
            "item_count": description.get("ItemCount"),
            "pitr": pitr.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
            == "ENABLED",
            "ttl_attribute": ttl.get("AttributeName")
            if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
            else None,
            "tags": tags,
            "stream": stream.get("StreamViewType") if stream.get("StreamEnabled") else None,
            "deletion_protection": bool(description.get("DeletionProtectionEnabled")),
            "step_scaling": sorted(
                p["PolicyName"] for p in policies if p["PolicyType"] != "TargetTrackingScaling"
            ),
            "autoscaling": [
                {
                    "resource_id": t["ResourceId"],
                    "dimension": t["ScalableDimension"],
                    "min": t["MinCapacity"],
                    "max": t["MaxCapacity"],
                    "policies": [
                        {
                            "name": p["PolicyName"],
                            "type": p["PolicyType"],
                            "configuration": _tracking(p),
                        }
                        for p in policies
                        if p["ResourceId"] == t["ResourceId"]
                        and p["ScalableDimension"] == t["ScalableDimension"]
                        and p["PolicyType"] == "TargetTrackingScaling"
                    ],
                }
                for t in targets.get("ScalableTargets", [])
            ],
        }

    def start_restore(self, job: RestoreJob) -> None:
        """Start the restore into `job.restored_table`; a retry finds it started."""
        ddb = client("dynamodb")
        try:
            if job.source.point_in_time:
                # The point the operator approved, not whatever is latest by now.
                point = (
                    {"RestoreDateTime": job.source.created}
                    if job.source.created
                    else {"UseLatestRestorableTime": True}
                )
                ddb.restore_table_to_point_in_time(
                    SourceTableName=job.table, TargetTableName=job.restored_table, **point
                )
            else:
                ddb.restore_table_from_backup(
                    TargetTableName=job.restored_table, BackupArn=job.source.backup_arn
                )
        except ClientError as error:
            if error.response["Error"]["Code"] == "TableAlreadyExistsException":
                summary = ddb.describe_table(TableName=job.restored_table)["Table"].get(
                    "RestoreSummary", {}
                )
                if job.table in summary.get("SourceTableArn", ""):
                    return  # this restore, started by an earlier attempt of the step
            raise ActionError.from_client_error(
                f"restore of {job.table} into {job.restored_table}", error
            ) from error

    def table_status(self, job: RestoreJob) -> str:
        """The restored table's status (CREATING until the restore is done, then ACTIVE)."""
        return str(
            client("dynamodb").describe_table(TableName=job.restored_table)["Table"]["TableStatus"]
        )

    def reapply(self, job: RestoreJob) -> list[str]:
        """Give the restored table what the source had and a restore does not copy."""
        settings, restored = job.source_settings, job.restored_table
        if not settings.get("readable"):
            return ["the source table was not readable: nothing re-applied"]
        ddb, done = client("dynamodb"), []
        if settings["pitr"]:
            ddb.update_continuous_backups(
                TableName=restored,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
            done.append("point-in-time recovery enabled")
        if settings["ttl_attribute"]:
            ddb.update_time_to_live(
                TableName=restored,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": settings["ttl_attribute"],
                },
            )
            done.append(f"TTL on {settings['ttl_attribute']}")
        # The source's tags first (cost allocation, access control); this project's markers
        # only in the room left: "The maximum number of tags per resource is 50."
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TaggingRestrictions.html
        markers = [
            {"Key": "autoremediate:restored-from", "Value": job.table},
            {"Key": "autoremediate:restore", "Value": job.event_id},
        ][: max(0, _MAX_TAGS - len(settings["tags"]))]
        tags = [*settings["tags"], *markers]
        if tags:
            arn = ddb.describe_table(TableName=restored)["Table"]["TableArn"]
            ddb.tag_resource(ResourceArn=arn, Tags=tags)
        done.append(
            f"{len(settings['tags'])} tags copied"
            + ("" if len(markers) == 2 else f" ({2 - len(markers)} of autoremediate's left off: "
               f"a table holds at most {_MAX_TAGS})")
        )  # fmt: skip
        if settings.get("stream"):
            ddb.update_table(
                TableName=restored,
                StreamSpecification={"StreamEnabled": True, "StreamViewType": settings["stream"]},
            )
            done.append(f"stream {settings['stream']} enabled (a new stream: consumers must move)")
        scaling = client("application-autoscaling")
        for target in settings["autoscaling"]:
            resource_id = target["resource_id"].replace(
                f"table/{job.table}", f"table/{restored}", 1
            )
            scaling.register_scalable_target(
                ServiceNamespace="dynamodb",
                ResourceId=resource_id,
                ScalableDimension=target["dimension"],
                MinCapacity=target["min"],
                MaxCapacity=target["max"],
            )
            for policy in target["policies"]:
                scaling.put_scaling_policy(
                    PolicyName=policy["name"],
                    ServiceNamespace="dynamodb",
                    ResourceId=resource_id,
                    ScalableDimension=target["dimension"],
                    PolicyType=policy["type"],
                    TargetTrackingScalingPolicyConfiguration=policy["configuration"],
                )
            done.append(
                f"autoscaling {target['dimension']} {target['min']}-{target['max']} on "
                f"{resource_id} ({len(target['policies'])} policies)"
            )
        # Left to a person, and said so in the cutover's approval email.
        if settings.get("step_scaling"):
            done.append(f"NOT re-applied: step scaling policies {settings['step_scaling']}")
        if settings.get("deletion_protection"):
            done.append("NOT re-applied: deletion protection (turn it on after the cutover)")
        return done

    def verify(self, job: RestoreJob) -> dict[str, Any]:
        """Count the copy's items (up to `count_up_to`), compare with what the backup or the
        source reports (DynamoDB's figures: the source is never scanned), and look a sample
        of the copy's keys up in the source. An empty copy of a table that had items fails;
        the rest is for the operator to judge at the cutover's approval."""
        ddb = client("dynamodb")
        restored_items, complete = _count(job.restored_table, self.params.count_up_to)
        readable = bool(job.source_settings.get("readable"))
        expected = job.source.expected_items
        if expected is None and readable:  # DynamoDB's figure, updated about every 6 hours
            expected = job.source_settings.get("item_count")
        result: dict[str, Any] = {
            "restored_items": restored_items,
            "counted_all": complete,
            "expected_items": expected,
            "source_readable": readable,
        }
        if restored_items == 0 and expected:
            raise ActionError(f"{job.restored_table} is empty; the source had {expected} items")
        if readable and self.params.sample_keys:
            key_names = [
                k["AttributeName"]
                for k in ddb.describe_table(TableName=job.table)["Table"]["KeySchema"]
            ]
            items = ddb.scan(
                TableName=job.restored_table,
                Limit=self.params.sample_keys,
                ProjectionExpression=", ".join(f"#k{i}" for i in range(len(key_names))),
                ExpressionAttributeNames={f"#k{i}": name for i, name in enumerate(key_names)},
            ).get("Items", [])
            found = sum(
                "Item" in ddb.get_item(TableName=job.table, Key=item, ConsistentRead=True)
                for item in items
            )
            result |= {"sample": len(items), "sample_in_source": found}
        return result

    def read_setting(self) -> str | None:
        """The table name the application reads now."""
        cutover = self.params.cutover
        try:
            if cutover.parameter is not None:
                return str(
                    client("ssm").get_parameter(Name=cutover.parameter)["Parameter"]["Value"]
                )
            configuration = client("lambda").get_function_configuration(
                FunctionName=cutover.function
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise ActionError.from_client_error(f"reading {cutover}", error) from error
        variables = configuration.get("Environment", {}).get("Variables", {})
        value = variables.get(cutover.variable)
        return None if value is None else str(value)

    def cut_over(self, job: RestoreJob) -> tuple[str | None, str | None]:
        """Point the application's setting at the restored table: (before, after as read)."""
        cutover, before = self.params.cutover, self.read_setting()
        try:
            if cutover.parameter is not None:
                client("ssm").put_parameter(
                    Name=cutover.parameter, Value=job.restored_table, Type="String", Overwrite=True
                )
            else:
                self._set_variable(job.restored_table)
        except ClientError as error:
            raise ActionError.from_client_error(f"cutover of {cutover}", error) from error
        return before, self.read_setting()

    def _set_variable(self, value: str) -> None:
        function = str(self.params.cutover.function)
        # An update in progress (a deploy) would refuse ours: wait for it first.
        configuration = settled_configuration(function)
        # UpdateFunctionConfiguration replaces the whole environment: keep the other variables.
        variables = dict(configuration.get("Environment", {}).get("Variables", {}))
        variables[str(self.params.cutover.variable)] = value
        client("lambda").update_function_configuration(
            FunctionName=function, Environment={"Variables": variables}
        )
        if settled_configuration(function).get("LastUpdateStatus") == "Failed":
            raise ActionError(f"the update of {self.params.cutover} failed")

    def discard(self, job: RestoreJob) -> str:
        """After a failure: delete the half-restored table, unless the application uses it."""
        if not job.restored_table.startswith(job.table + _RESTORED_SUFFIX):
            raise ActionError(f"refusing to delete {job.restored_table}: not a restored copy")
        if self.read_setting() == job.restored_table:
            return f"{job.restored_table} kept: {self.params.cutover} points at it"
        try:
            client("dynamodb").delete_table(TableName=job.restored_table)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "ResourceNotFoundException":
                return f"{job.restored_table} was never created"
            if code == "ResourceInUseException":  # still CREATING: DynamoDB refuses
                return (
                    f"{job.restored_table} is still being restored and could not be deleted: "
                    "delete it by hand once it is ACTIVE"
                )
            raise
        return f"{job.restored_table} deleted"


def _tags_of(arn: str) -> list[dict[str, str]]:
    """The table's own tags, every page of them (AWS's `aws:` tags cannot be set on a copy:
    the prefix is reserved)."""
    ddb, tags = client("dynamodb"), []
    page: dict[str, str] = {"ResourceArn": arn}
    while True:
        answer = ddb.list_tags_of_resource(**page)
        tags += [t for t in answer.get("Tags", []) if not t["Key"].startswith("aws:")]
        if not answer.get("NextToken"):
            return tags
        page["NextToken"] = answer["NextToken"]


class KillSwitchOff(ActionError):
    """The kill switch was off when a step was to change something: the flow stops there."""


# The error name Step Functions sees when a task raises KillSwitchOff (its type's name).
KILL_SWITCH_OFF = KillSwitchOff.__name__


class _NoSource(ActionError):
    """Nothing to restore from."""


def _resource_id(table: str, unit: str) -> str:
    return f"table/{table}" if unit == "table" else f"table/{table}/index/{unit}"


def _tracking(policy: dict[str, Any]) -> dict[str, Any]:
    return dict(policy.get("TargetTrackingScalingPolicyConfiguration", {}))


def _count(table: str, up_to: int) -> tuple[int, bool]:
    """Items in `table`, counted (a new table's ItemCount lags by hours) up to about `up_to`:
    (the count, whether it is all of them)."""
    total = 0
    pages = (
        client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=table, Select="COUNT", PaginationConfig={"PageSize": min(up_to, 10_000)}
        )
    )
    for page in pages:
        total += page["Count"]
        if total >= up_to and "LastEvaluatedKey" in page:
            return total, False
    return total, True
