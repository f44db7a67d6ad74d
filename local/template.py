"""infra/template.yaml as the local stack sees it: translated by aws-sam-translator (offline, as
`sam deploy` would before CloudFormation sees it) and with every intrinsic the local stack needs
resolved for given parameter values, region, account and stack name.

    stack = load(ROOT / "infra/template.yaml", {"ChunkSize": "50"},
                 region="us-east-1", account_id="123456789012", stack_name="thingpress")
    stack.bucket.name, stack.functions["SplitFunction"].environment, stack.state_machine.definition

Resolved: Ref (parameters, pseudo parameters, resources), Fn::Sub, Fn::GetAtt, Fn::Join,
Fn::Select, Fn::Split, Fn::If with the template's Conditions (Fn::Equals, Fn::Not, Fn::And,
Fn::Or, Condition) and AWS::NoValue. Only what the local stack reads is resolved; anything else
it would need (an intrinsic or attribute this module does not know, a parameter without a value)
is a TemplateError naming it and where it was met, never a silent guess.

Names CloudFormation would generate (a bucket without BucketName, a role without RoleName) are
`<stack name>-<logical id>` here (lower case for buckets), or what `physical_names` says.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PSEUDO_PARAMETERS = ("AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::StackName", "AWS::URLSuffix")
# Placeholders for local code and definition paths: the translator accepts only S3 URIs (as
# `sam package` would have uploaded them); the local stack reads the files themselves.
_CODE_URI = "s3://thingpress-local-template/code"
_DEFINITION_URI = "s3://thingpress-local-template/definition"


class TemplateError(Exception):
    """The template cannot be deployed locally; the message says what and where."""


class _NoValue:
    """AWS::NoValue: the property or list element it stands for is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# ---------------------------------------------------------------- result


@dataclass(frozen=True)
class Role:
    """An IAM role of the translated template with its inline policies resolved."""

    logical_id: str
    name: str
    arn: str
    assume_role_policy: dict[str, Any]
    policies: dict[str, dict[str, Any]]  # policy name -> resolved policy document
    managed_policy_arns: list[str]

    @property
    def statements(self) -> list[dict[str, Any]]:
        """Every statement of every inline policy, in template order."""
        out: list[dict[str, Any]] = []
        for doc in self.policies.values():
            stmts = doc.get("Statement", [])
            out.extend(stmts if isinstance(stmts, list) else [stmts])
        return out


@dataclass(frozen=True)
class Bucket:
    """The import bucket, with its configuration in the shapes the S3 API takes."""

    logical_id: str
    name: str
    arn: str
    versioned: bool
    # PutBucketEncryption's ServerSideEncryptionConfiguration, or None.
    encryption: dict[str, Any] | None
    # PutBucketLifecycleConfiguration's LifecycleConfiguration, or None.
    lifecycle: dict[str, Any] | None
    eventbridge: bool


@dataclass(frozen=True)
class Function:
    """One Lambda function as deployed: name, environment, limits and its role."""

    logical_id: str
    name: str
    arn: str
    binary: str  # the cargo binary (Metadata.BuildProperties.Binary)
    environment: dict[str, str]
    timeout: int
    memory: int
    role: Role

    @property
    def role_logical_id(self) -> str:
        """Logical id of the function's (SAM-generated) role."""
        return self.role.logical_id

    @property
    def role_statements(self) -> list[dict[str, Any]]:
        """The IAM statements the function's role allows (inline policies, resolved)."""
        return self.role.statements


@dataclass(frozen=True)
class StateMachine:
    """The state machine: its definition with DefinitionSubstitutions applied."""

    logical_id: str
    name: str
    arn: str
    type: str
    definition: str
    definition_path: Path | None
    substitutions: dict[str, str]
    role: Role
    source: str  # the definition before substitution

    def definition_with(self, overrides: dict[str, str]) -> str:
        """The definition with some substitutions replaced (what local cannot run as on AWS)."""
        return substitute(self.source, {**self.substitutions, **overrides}, f"{self.logical_id} definition")

    @property
    def role_statements(self) -> list[dict[str, Any]]:
        """The IAM statements the state machine's role allows."""
        return self.role.statements


@dataclass(frozen=True)
class TriggerRule:
    """One target of an EventBridge rule: the resolved event pattern and what it starts."""

    logical_id: str
    target_id: str
    event_pattern: dict[str, Any]
    target_arn: str
    role: Role | None

    @property
    def role_statements(self) -> list[dict[str, Any]]:
        """The IAM statements of the role EventBridge assumes for this target."""
        return self.role.statements if self.role else []


@dataclass(frozen=True)
class Table:
    """A DynamoDB table, with its definition in the shapes CreateTable and UpdateTimeToLive take."""

    logical_id: str
    name: str
    arn: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    billing_mode: str
    provisioned_throughput: dict[str, int] | None
    global_secondary_indexes: list[dict[str, Any]]
    ttl_attribute: str | None  # TimeToLiveSpecification's AttributeName when Enabled

    def create_table_request(self) -> dict[str, Any]:
        """CreateTable's arguments for this table."""
        out: dict[str, Any] = {
            "TableName": self.name,
            "KeySchema": self.key_schema,
            "AttributeDefinitions": self.attribute_definitions,
            "BillingMode": self.billing_mode,
        }
        if self.provisioned_throughput:
            out["ProvisionedThroughput"] = self.provisioned_throughput
        if self.global_secondary_indexes:
            out["GlobalSecondaryIndexes"] = self.global_secondary_indexes
        return out


@dataclass(frozen=True)
class Stack:
    """What the local stack deploys from the template."""

    stack_name: str
    region: str
    account_id: str
    parameters: dict[str, Any]
    bucket: Bucket
    functions: dict[str, Function]
    state_machine: StateMachine
    trigger_rules: list[TriggerRule]
    roles: dict[str, Role] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)

    def function_by_name(self, name: str) -> Function | None:
        """The function deployed under `name`."""
        return next((f for f in self.functions.values() if f.name == name), None)


# ---------------------------------------------------------------- loading


def parameter_defaults(template_path: Path) -> dict[str, Any]:
    """Each parameter's Default as written in the template (no translation)."""
    raw = _parse(template_path)
    params = raw.get("Parameters") or {}
    return {k: v.get("Default") for k, v in params.items() if isinstance(v, dict) and "Default" in v}


# `Quota*` parameters that are not an IoT operation's rate.
QUOTA_NOT_RATES = {"QuotaReserve"}


def quota_rate_defaults(template_path: Path) -> dict[str, float]:
    """The IoT operations' default rates (requests/s) from the template's `Quota<Operation>`
    parameters: AWS's default quotas (tests/template.rs holds them against the importer's API
    catalogue), keyed by operation name."""
    rates: dict[str, float] = {}
    for name, default in parameter_defaults(template_path).items():
        if not name.startswith("Quota") or name in QUOTA_NOT_RATES:
            continue
        try:
            rate = float(default)
        except (TypeError, ValueError):
            raise TemplateError(f"{template_path}: parameter {name} default {default!r} is not a number") from None
        if not rate > 0:
            raise TemplateError(f"{template_path}: parameter {name} default {default!r} is not a positive rate")
        rates[name.removeprefix("Quota")] = rate
    return rates


_QUOTA_CODE = re.compile(r"^L-[0-9A-F]{8}$")


def quota_codes(template_path: Path) -> dict[str, str]:
    """The Service Quotas code of each IoT operation's rate quota, from the template's
    `Metadata: Thingpress: QuotaCodes` (operation -> code; tests/template.rs holds it against
    the importer's catalogue). A template without the block declares none."""
    raw = _parse(template_path)
    where = f"{template_path}: Metadata.Thingpress.QuotaCodes"
    meta = raw.get("Metadata") or {}
    block = (meta.get("Thingpress") or {}) if isinstance(meta, dict) else None
    if not isinstance(block, dict):
        raise TemplateError(f"{template_path}: Metadata.Thingpress must be a mapping")
    codes = block.get("QuotaCodes", {})
    if not isinstance(codes, dict):
        raise TemplateError(f"{where} must map operation names to quota codes")
    out: dict[str, str] = {}
    for op, code in codes.items():
        if not isinstance(code, str) or not _QUOTA_CODE.match(code):
            raise TemplateError(f"{where}.{op}: {code!r} is not a Service Quotas code (L-XXXXXXXX)")
        if code in out.values():
            raise TemplateError(f"{where}.{op}: {code} is also another operation's code")
        out[str(op)] = code
    return out


def load(
    template_path: str | Path,
    parameters: dict[str, str] | None = None,
    *,
    region: str,
    account_id: str,
    stack_name: str,
    physical_names: dict[str, str] | None = None,
) -> Stack:
    """Translate and resolve the template for these parameter values (overrides of Defaults)."""
    path = Path(template_path).resolve()
    raw = _parse(path)
    definition_paths = _localize_uris(raw, path.parent)
    values = _parameter_values(raw.get("Parameters") or {}, parameters or {})
    translated = _translate(raw, values, region, account_id, stack_name)
    r = Resolver(translated, values, region=region, account_id=account_id, stack_name=stack_name, physical_names=physical_names)
    return r.stack(definition_paths)


def load_role(
    template_path: str | Path,
    parameters: dict[str, str] | None = None,
    *,
    logical_id: str,
    region: str,
    account_id: str,
    stack_name: str,
) -> Role:
    """One role of a plain CloudFormation template (e.g. infra/target-role.yaml), resolved for
    these parameter values in this account."""
    path = Path(template_path).resolve()
    raw = _parse(path)
    values = _parameter_values(raw.get("Parameters") or {}, parameters or {})
    translated = _translate(raw, values, region, account_id, stack_name)
    r = Resolver(translated, values, region=region, account_id=account_id, stack_name=stack_name)
    return r.role(logical_id, str(path))


def _parse(path: Path) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    try:
        text = path.read_text()
    except OSError as e:
        raise TemplateError(f"{path}: {e}") from None
    try:
        raw = yaml_parse(text)
    except Exception as e:  # noqa: BLE001 - yaml raises many types; all mean "not a template"
        raise TemplateError(f"{path}: not YAML/JSON: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("Resources"), dict):
        raise TemplateError(f"{path}: no Resources")
    return raw


def _localize_uris(raw: dict[str, Any], base: Path) -> dict[str, Path]:
    """Swap local CodeUri/DefinitionUri paths for S3 placeholders; returns the definition files."""
    definitions: dict[str, Path] = {}
    for logical_id, res in raw["Resources"].items():
        props = res.get("Properties") if isinstance(res, dict) else None
        if not isinstance(props, dict):
            continue
        if isinstance(props.get("CodeUri"), str) and not props["CodeUri"].startswith("s3://"):
            props["CodeUri"] = _CODE_URI
        uri = props.get("DefinitionUri")
        if isinstance(uri, str) and not uri.startswith("s3://"):
            definitions[logical_id] = (base / uri).resolve()
            props["DefinitionUri"] = _DEFINITION_URI
    return definitions


def _parameter_values(declared: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """Defaults overridden by `given`, checked against AllowedValues / Min / Max."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameters {unknown} (the template declares {sorted(declared)})")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {}
        if name in given:
            value: Any = given[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"template parameter {name} has no Default and no value was given")
        ptype = str(spec.get("Type", "String"))
        text = _scalar_text(value)
        allowed = spec.get("AllowedValues")
        if isinstance(allowed, list) and text not in [_scalar_text(a) for a in allowed]:
            raise TemplateError(f"template parameter {name}={text!r} is not one of {allowed}")
        if ptype == "Number":
            try:
                number = float(text)
            except ValueError:
                raise TemplateError(f"template parameter {name}={text!r} is not a number") from None
            for bound, ok in (("MinValue", lambda b: number >= b), ("MaxValue", lambda b: number <= b)):
                if bound in spec and not ok(float(spec[bound])):
                    raise TemplateError(f"template parameter {name}={text} is outside {bound} {spec[bound]}")
        if ptype == "String":
            # CloudFormation refuses these before creating anything; so does the local stack.
            for bound, ok in (("MinLength", lambda b: len(text) >= b), ("MaxLength", lambda b: len(text) <= b)):
                if bound in spec and not ok(int(spec[bound])):
                    raise TemplateError(f"template parameter {name} is outside {bound} {spec[bound]}")
            pattern = spec.get("AllowedPattern")
            if isinstance(pattern, str) and re.fullmatch(pattern, text) is None:
                raise TemplateError(f"template parameter {name}={text!r} does not match AllowedPattern {pattern}")
        if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
            values[name] = [] if text == "" else [p.strip() for p in text.split(",")]
        else:
            values[name] = text
    return values


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(_scalar_text(v) for v in value)
    return str(value)


def _translate(raw: dict[str, Any], values: dict[str, Any], region: str, account_id: str, stack_name: str) -> dict[str, Any]:
    """SAM → CloudFormation, offline (no managed-policy lookups, no AWS session)."""
    if "Transform" not in raw:
        return copy.deepcopy(raw)
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    def no_managed_policies() -> dict[str, str]:
        # Only reached for a policy given by a managed policy *name*; offline we cannot map it.
        raise TemplateError("the template names a managed policy by name; the local stack cannot look it up offline")

    pseudo = {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::StackName": stack_name,
        "AWS::Partition": partition(region),
    }
    params = {k: (",".join(v) if isinstance(v, list) else v) for k, v in values.items()}
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        return translator.translate(copy.deepcopy(raw), {**params, **pseudo}, get_managed_policy_map=no_managed_policies)
    except InvalidDocumentException as e:
        causes = "; ".join(str(c) for c in e.causes)
        raise TemplateError(f"SAM translation failed: {causes}") from None


def partition(region: str) -> str:
    """The partition of a region (aws, aws-cn, aws-us-gov)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# ---------------------------------------------------------------- resolution

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Resolves intrinsics of a translated (plain CloudFormation) template."""

    def __init__(
        self,
        template: dict[str, Any],
        values: dict[str, Any],
        *,
        region: str,
        account_id: str,
        stack_name: str,
        physical_names: dict[str, str] | None = None,
    ) -> None:
        self.template = template
        self.resources: dict[str, Any] = template.get("Resources") or {}
        self.conditions: dict[str, Any] = template.get("Conditions") or {}
        self.region, self.account_id, self.stack_name = region, account_id, stack_name
        self.partition = partition(region)
        self.values = dict(values)
        self.values.update(
            {
                "AWS::Region": region,
                "AWS::AccountId": account_id,
                "AWS::StackName": stack_name,
                "AWS::Partition": self.partition,
                "AWS::URLSuffix": "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com",
            }
        )
        self.physical_names = dict(physical_names or {})
        self._names: dict[str, str] = {}
        self._naming: set[str] = set()
        self._conditions_done: dict[str, bool] = {}

    # ----- values
    def resolve(self, value: Any, where: str) -> Any:
        """`value` with every intrinsic replaced; NO_VALUE entries dropped from dicts and lists."""
        if isinstance(value, dict):
            if len(value) == 1:
                (key, arg), = value.items()
                if key == "Ref" or key.startswith("Fn::"):
                    return self._intrinsic(key, arg, where)
            out = {}
            for k, v in value.items():
                r = self.resolve(v, f"{where}.{k}")
                if r is not NO_VALUE:
                    out[k] = r
            return out
        if isinstance(value, list):
            out_list = []
            for i, v in enumerate(value):
                r = self.resolve(v, f"{where}[{i}]")
                if r is not NO_VALUE:
                    out_list.append(r)
            return out_list
        return value

    def _intrinsic(self, key: str, arg: Any, where: str) -> Any:
        at = f"{where} ({key})"
        if key == "Ref":
            if not isinstance(arg, str):
                raise TemplateError(f"{at}: Ref takes a name, got {arg!r}")
            return self.ref(arg, at)
        if key == "Fn::GetAtt":
            if isinstance(arg, str):
                arg = arg.split(".", 1)
            if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
                raise TemplateError(f"{at}: Fn::GetAtt takes [resource, attribute], got {arg!r}")
            return self.get_att(arg[0], arg[1], at)
        if key == "Fn::Sub":
            return self._sub(arg, at)
        if key == "Fn::If":
            if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
                raise TemplateError(f"{at}: Fn::If takes [condition, then, else], got {arg!r}")
            return self.resolve(arg[1] if self.condition(arg[0], at) else arg[2], where)
        if key == "Fn::Join":
            if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str)):
                raise TemplateError(f"{at}: Fn::Join takes [delimiter, list], got {arg!r}")
            items = self.resolve(arg[1], at)
            if not isinstance(items, list):
                raise TemplateError(f"{at}: Fn::Join needs a list, got {items!r}")
            return arg[0].join(_scalar_text(i) for i in items)
        if key == "Fn::Split":
            if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str)):
                raise TemplateError(f"{at}: Fn::Split takes [delimiter, string], got {arg!r}")
            return str(self.resolve(arg[1], at)).split(arg[0])
        if key == "Fn::Select":
            if not (isinstance(arg, list) and len(arg) == 2):
                raise TemplateError(f"{at}: Fn::Select takes [index, list], got {arg!r}")
            index, items = self.resolve(arg[0], at), self.resolve(arg[1], at)
            try:
                return items[int(index)]
            except (ValueError, TypeError, IndexError):
                raise TemplateError(f"{at}: cannot select {index!r} from {items!r}") from None
        raise TemplateError(f"{at}: the local stack cannot resolve {key}")

    def _sub(self, arg: Any, at: str) -> str:
        if isinstance(arg, str):
            text, local = arg, {}
        elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict):
            text, local = arg[0], {k: self.resolve(v, at) for k, v in arg[1].items()}
        else:
            raise TemplateError(f"{at}: Fn::Sub takes a string or [string, variables], got {arg!r}")

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} stays literal
            if name in local:
                return _scalar_text(local[name])
            if "." in name and not name.startswith("AWS::"):
                res, attr = name.split(".", 1)
                return _scalar_text(self.get_att(res, attr, at))
            return _scalar_text(self.ref(name, at))

        return _SUB_VAR.sub(one, text)

    def condition(self, name: str, at: str) -> bool:
        """The value of a named condition of the template."""
        if name in self._conditions_done:
            return self._conditions_done[name]
        if name not in self.conditions:
            raise TemplateError(f"{at}: unknown condition {name}")
        value = self._cond(self.conditions[name], f"Conditions.{name}")
        self._conditions_done[name] = value
        return value

    def _cond(self, expr: Any, at: str) -> bool:
        if not (isinstance(expr, dict) and len(expr) == 1):
            raise TemplateError(f"{at}: a condition must be one of Fn::Equals/Not/And/Or/Condition, got {expr!r}")
        (key, arg), = expr.items()
        if key == "Fn::Equals":
            if not (isinstance(arg, list) and len(arg) == 2):
                raise TemplateError(f"{at}: Fn::Equals takes two values")
            a, b = (self.resolve(v, at) for v in arg)
            return _scalar_text(a) == _scalar_text(b)
        if key == "Fn::Not":
            if not (isinstance(arg, list) and len(arg) == 1):
                raise TemplateError(f"{at}: Fn::Not takes one condition")
            return not self._cond(arg[0], at)
        if key in ("Fn::And", "Fn::Or"):
            if not isinstance(arg, list):
                raise TemplateError(f"{at}: {key} takes a list of conditions")
            results = [self._cond(c, at) for c in arg]
            return all(results) if key == "Fn::And" else any(results)
        if key == "Condition":
            return self.condition(str(arg), at)
        raise TemplateError(f"{at}: the local stack cannot evaluate {key} in a condition")

    # ----- resources
    def _resource(self, logical_id: str, at: str) -> dict[str, Any]:
        res = self.resources.get(logical_id)
        if not isinstance(res, dict):
            raise TemplateError(f"{at}: no resource or parameter named {logical_id}")
        return res

    def _props(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id].get("Properties") or {}

    def name_of(self, logical_id: str, at: str) -> str:
        """The physical name of a resource: its name property, `physical_names`, or generated."""
        if logical_id in self._names:
            return self._names[logical_id]
        if logical_id in self._naming:
            raise TemplateError(f"{at}: the name of {logical_id} depends on itself")
        res = self._resource(logical_id, at)
        kind = res.get("Type")
        name_prop = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::IAM::Role": "RoleName",
            "AWS::StepFunctions::StateMachine": "StateMachineName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::Events::Rule": "Name",
            "AWS::SNS::Topic": "TopicName",
            "AWS::DynamoDB::Table": "TableName",
        }.get(kind)
        if name_prop is None:
            raise TemplateError(f"{at}: the local stack cannot name a {kind} ({logical_id})")
        self._naming.add(logical_id)
        try:
            given = self._props(logical_id).get(name_prop)
            if logical_id in self.physical_names:
                name = self.physical_names[logical_id]
            elif given is not None:
                name = _scalar_text(self.resolve(given, f"{logical_id}.Properties.{name_prop}"))
            else:
                name = f"{self.stack_name}-{logical_id}"
                if kind == "AWS::S3::Bucket":
                    name = name.lower()
        finally:
            self._naming.discard(logical_id)
        self._names[logical_id] = name
        return name

    def ref(self, name: str, at: str) -> Any:
        """What Ref gives for a parameter, pseudo parameter or resource."""
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        if name.startswith("AWS::"):
            raise TemplateError(f"{at}: the local stack has no value for {name}")
        res = self._resource(name, at)
        kind = res.get("Type")
        if kind in ("AWS::StepFunctions::StateMachine", "AWS::SNS::Topic"):
            return self.get_att(name, "Arn", at)
        if kind == "AWS::SQS::Queue":
            return self.get_att(name, "QueueUrl", at)
        return self.name_of(name, at)

    def get_att(self, logical_id: str, attr: str, at: str) -> str:
        """What Fn::GetAtt gives for the attributes the local stack knows."""
        res = self._resource(logical_id, at)
        kind = res.get("Type")
        p, r, a = self.partition, self.region, self.account_id
        n = lambda: self.name_of(logical_id, at)  # noqa: E731 - named lazily: not every attribute needs it
        known = {
            ("AWS::S3::Bucket", "Arn"): lambda: f"arn:{p}:s3:::{n()}",
            ("AWS::Lambda::Function", "Arn"): lambda: f"arn:{p}:lambda:{r}:{a}:function:{n()}",
            ("AWS::IAM::Role", "Arn"): lambda: f"arn:{p}:iam::{a}:role{self._role_path(logical_id)}{n()}",
            ("AWS::StepFunctions::StateMachine", "Arn"): lambda: f"arn:{p}:states:{r}:{a}:stateMachine:{n()}",
            ("AWS::StepFunctions::StateMachine", "Name"): n,
            ("AWS::Logs::LogGroup", "Arn"): lambda: f"arn:{p}:logs:{r}:{a}:log-group:{n()}:*",
            ("AWS::SQS::Queue", "Arn"): lambda: f"arn:{p}:sqs:{r}:{a}:{n()}",
            ("AWS::SQS::Queue", "QueueName"): n,
            ("AWS::SQS::Queue", "QueueUrl"): lambda: f"https://sqs.{r}.amazonaws.com/{a}/{n()}",
            ("AWS::Events::Rule", "Arn"): lambda: f"arn:{p}:events:{r}:{a}:rule/{n()}",
            ("AWS::SNS::Topic", "Arn"): lambda: f"arn:{p}:sns:{r}:{a}:{n()}",
            ("AWS::SNS::Topic", "TopicName"): n,
            ("AWS::DynamoDB::Table", "Arn"): lambda: f"arn:{p}:dynamodb:{r}:{a}:table/{n()}",
        }
        fn = known.get((kind, attr))
        if fn is None:
            raise TemplateError(f"{at}: the local stack cannot resolve Fn::GetAtt {logical_id}.{attr} ({kind})")
        return fn()

    def _role_path(self, logical_id: str) -> str:
        path = self.resolve(self._props(logical_id).get("Path", "/"), f"{logical_id}.Properties.Path")
        return str(path) if str(path).endswith("/") else f"{path}/"

    # ----- typed parts
    def role(self, logical_id: str, at: str) -> Role:
        """A role of the template with its inline policies resolved."""
        res = self._resource(logical_id, at)
        if res.get("Type") != "AWS::IAM::Role":
            raise TemplateError(f"{at}: {logical_id} is a {res.get('Type')}, not an AWS::IAM::Role")
        where = f"{logical_id}.Properties"
        props = self._props(logical_id)
        policies: dict[str, dict[str, Any]] = {}
        for i, pol in enumerate(self.resolve(props.get("Policies") or [], f"{where}.Policies")):
            if not isinstance(pol, dict) or not isinstance(pol.get("PolicyDocument"), dict):
                raise TemplateError(f"{where}.Policies[{i}]: not an inline policy with a PolicyDocument")
            policies[str(pol.get("PolicyName") or f"{logical_id}Policy{i}")] = pol["PolicyDocument"]
        return Role(
            logical_id=logical_id,
            name=self.name_of(logical_id, at),
            arn=self.get_att(logical_id, "Arn", at),
            assume_role_policy=self.resolve(props.get("AssumeRolePolicyDocument") or {}, f"{where}.AssumeRolePolicyDocument"),
            policies=policies,
            managed_policy_arns=[str(m) for m in self.resolve(props.get("ManagedPolicyArns") or [], f"{where}.ManagedPolicyArns")],
        )

    def _role_of(self, value: Any, at: str) -> Role:
        """The role a RoleArn/Role property names: it must be Fn::GetAtt <role>.Arn of this template."""
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            arg = value["Fn::GetAtt"]
            if isinstance(arg, str):
                arg = arg.split(".", 1)
            if isinstance(arg, list) and len(arg) == 2 and arg[1] == "Arn":
                return self.role(str(arg[0]), at)
        raise TemplateError(f"{at}: the role must be Fn::GetAtt <a role of this template>.Arn to be enforced locally, got {value!r}")

    def _of_type(self, kind: str) -> list[str]:
        """The resources of a type that the stack creates (their Condition, if any, holds)."""
        return [
            k
            for k, v in self.resources.items()
            if isinstance(v, dict)
            and v.get("Type") == kind
            and ("Condition" not in v or self.condition(str(v["Condition"]), f"{k}.Condition"))
        ]

    def bucket(self) -> Bucket:
        """The one S3 bucket of the stack."""
        ids = self._of_type("AWS::S3::Bucket")
        if len(ids) != 1:
            raise TemplateError(f"the local stack deploys exactly one S3 bucket; the template has {ids or 'none'}")
        lid = ids[0]
        where = f"{lid}.Properties"
        props = self.resolve(self._props(lid), where)
        versioning = (props.get("VersioningConfiguration") or {}).get("Status")
        if versioning not in (None, "Enabled", "Suspended"):
            raise TemplateError(f"{where}.VersioningConfiguration.Status: {versioning!r}")
        encryption = None
        sse = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
        if sse:
            rules = []
            for i, rule in enumerate(sse):
                default = rule.get("ServerSideEncryptionByDefault") or {}
                out: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": dict(default)}
                if "BucketKeyEnabled" in rule:
                    out["BucketKeyEnabled"] = _bool(rule["BucketKeyEnabled"], f"{where}.BucketEncryption[{i}]")
                rules.append(out)
            encryption = {"Rules": rules}
        lifecycle = None
        rules_in = (props.get("LifecycleConfiguration") or {}).get("Rules")
        if rules_in:
            lifecycle = {"Rules": [_lifecycle_rule(r, f"{where}.LifecycleConfiguration.Rules[{i}]") for i, r in enumerate(rules_in)]}
        notification = props.get("NotificationConfiguration") or {}
        eventbridge = _bool((notification.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled", False), where)
        name = self.name_of(lid, where)
        return Bucket(lid, name, self.get_att(lid, "Arn", where), versioning == "Enabled", encryption, lifecycle, eventbridge)

    def function(self, logical_id: str) -> Function:
        """One Lambda function, resolved."""
        where = f"{logical_id}.Properties"
        props = self._props(logical_id)
        variables = self.resolve((props.get("Environment") or {}).get("Variables") or {}, f"{where}.Environment.Variables")
        env = {str(k): _scalar_text(v) for k, v in variables.items()}
        binary = ((self.resources[logical_id].get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        if not isinstance(binary, str) or not binary:
            raise TemplateError(f"{logical_id}.Metadata.BuildProperties.Binary: the local stack runs functions by their cargo binary")
        # Lambda's defaults when the property is absent (or AWS::NoValue).
        timeout = _int(self._prop(props, "Timeout", 3, where), f"{where}.Timeout")
        memory = _int(self._prop(props, "MemorySize", 128, where), f"{where}.MemorySize")
        return Function(
            logical_id=logical_id,
            name=self.name_of(logical_id, where),
            arn=self.get_att(logical_id, "Arn", where),
            binary=binary,
            environment=env,
            timeout=timeout,
            memory=memory,
            role=self._role_of(props.get("Role"), f"{where}.Role"),
        )

    def table(self, logical_id: str) -> Table:
        """One DynamoDB table, resolved."""
        where = f"{logical_id}.Properties"
        props = self.resolve(self._props(logical_id), where)
        keys = props.get("KeySchema")
        attrs = props.get("AttributeDefinitions")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
            raise TemplateError(f"{where}.KeySchema: a list of {{AttributeName, KeyType}} is required")
        if not isinstance(attrs, list) or not all(isinstance(a, dict) for a in attrs):
            raise TemplateError(f"{where}.AttributeDefinitions: a list of {{AttributeName, AttributeType}} is required")
        billing = _scalar_text(props.get("BillingMode", "PROVISIONED"))
        if billing not in ("PROVISIONED", "PAY_PER_REQUEST"):
            raise TemplateError(f"{where}.BillingMode: {billing!r} is not PROVISIONED or PAY_PER_REQUEST")
        throughput = None
        if billing == "PROVISIONED":
            raw = props.get("ProvisionedThroughput") or {}
            throughput = {
                k: _int(raw.get(k), f"{where}.ProvisionedThroughput.{k}") for k in ("ReadCapacityUnits", "WriteCapacityUnits")
            }
        ttl = props.get("TimeToLiveSpecification") or {}
        ttl_attribute = None
        if ttl and _bool(ttl.get("Enabled", False), f"{where}.TimeToLiveSpecification.Enabled"):
            ttl_attribute = ttl.get("AttributeName")
            if not isinstance(ttl_attribute, str) or not ttl_attribute:
                raise TemplateError(f"{where}.TimeToLiveSpecification.AttributeName is required when Enabled")
        return Table(
            logical_id=logical_id,
            name=self.name_of(logical_id, where),
            arn=self.get_att(logical_id, "Arn", where),
            key_schema=[{k: _scalar_text(v) for k, v in key.items()} for key in keys],
            attribute_definitions=[{k: _scalar_text(v) for k, v in a.items()} for a in attrs],
            billing_mode=billing,
            provisioned_throughput=throughput,
            global_secondary_indexes=list(props.get("GlobalSecondaryIndexes") or []),
            ttl_attribute=ttl_attribute,
        )

    def _prop(self, props: dict[str, Any], key: str, default: Any, where: str) -> Any:
        value = self.resolve(props.get(key, default), f"{where}.{key}")
        return default if value is NO_VALUE else value

    def state_machine(self, definition_paths: dict[str, Path]) -> StateMachine:
        """The one state machine, its definition substituted."""
        ids = self._of_type("AWS::StepFunctions::StateMachine")
        if len(ids) != 1:
            raise TemplateError(f"the local stack deploys exactly one state machine; the template has {ids or 'none'}")
        lid = ids[0]
        where = f"{lid}.Properties"
        props = self._props(lid)
        path = definition_paths.get(lid)
        if path is not None:
            try:
                text = path.read_text()
            except OSError as e:
                raise TemplateError(f"{where}.DefinitionUri: {e}") from None
        elif "DefinitionString" in props:
            text = _scalar_text(self.resolve(props["DefinitionString"], f"{where}.DefinitionString"))
        elif "Definition" in props:
            text = json.dumps(self.resolve(props["Definition"], f"{where}.Definition"))
        else:
            raise TemplateError(f"{where}: no local DefinitionUri, DefinitionString or Definition")
        subs = {k: _scalar_text(v) for k, v in self.resolve(props.get("DefinitionSubstitutions") or {}, f"{where}.DefinitionSubstitutions").items()}
        definition = substitute(text, subs, f"{where} definition")
        sm_type = _scalar_text(self.resolve(props.get("StateMachineType", "STANDARD"), f"{where}.StateMachineType"))
        return StateMachine(
            logical_id=lid,
            name=self.name_of(lid, where),
            arn=self.get_att(lid, "Arn", where),
            type=sm_type,
            definition=definition,
            definition_path=path,
            substitutions=subs,
            role=self._role_of(props.get("RoleArn"), f"{where}.RoleArn"),
            source=text,
        )

    def trigger_rules(self) -> list[TriggerRule]:
        """Every target of every EventBridge rule with an event pattern."""
        out = []
        for lid in self._of_type("AWS::Events::Rule"):
            where = f"{lid}.Properties"
            props = self._props(lid)
            if "EventPattern" not in props:
                continue
            pattern = self.resolve(props["EventPattern"], f"{where}.EventPattern")
            for i, target in enumerate(props.get("Targets") or []):
                at = f"{where}.Targets[{i}]"
                role = self._role_of(target["RoleArn"], f"{at}.RoleArn") if "RoleArn" in target else None
                out.append(
                    TriggerRule(
                        logical_id=lid,
                        target_id=str(self.resolve(target.get("Id", str(i)), f"{at}.Id")),
                        event_pattern=pattern,
                        target_arn=_scalar_text(self.resolve(target.get("Arn"), f"{at}.Arn")),
                        role=role,
                    )
                )
        return out

    def stack(self, definition_paths: dict[str, Path]) -> Stack:
        """Everything the local stack deploys."""
        functions = {lid: self.function(lid) for lid in self._of_type("AWS::Lambda::Function")}
        sm = self.state_machine(definition_paths)
        rules = self.trigger_rules()
        roles = {f.role.logical_id: f.role for f in functions.values()}
        roles[sm.role.logical_id] = sm.role
        for rule in rules:
            if rule.role is not None:
                roles[rule.role.logical_id] = rule.role
        params = {k: v for k, v in self.values.items() if not k.startswith("AWS::")}
        tables = {lid: self.table(lid) for lid in self._of_type("AWS::DynamoDB::Table")}
        return Stack(self.stack_name, self.region, self.account_id, params, self.bucket(), functions, sm, rules, roles, tables)


def substitute(text: str, subs: dict[str, str], what: str = "definition") -> str:
    """Replace ${Name} as DefinitionSubstitutions does; a name without a value is an error."""
    missing = sorted(set(_SUB_VAR.findall(text)) - set(subs))
    if missing:
        raise TemplateError(f"{what} uses substitutions the template does not define: {missing}")
    out = _SUB_VAR.sub(lambda m: subs[m.group(1)], text)
    try:
        json.loads(out)
    except ValueError as e:
        raise TemplateError(f"{what} is not valid JSON after substitution: {e}") from None
    return out


def _bool(value: Any, at: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise TemplateError(f"{at}: {value!r} is not a boolean")


def _int(value: Any, at: str) -> int:
    try:
        return int(_scalar_text(value))
    except ValueError:
        raise TemplateError(f"{at}: {value!r} is not an integer") from None


# CloudFormation lifecycle rule property -> S3 API rule key (values converted below).
_LIFECYCLE_KEYS = {
    "Id",
    "Status",
    "Prefix",
    "ExpirationInDays",
    "ExpirationDate",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionExpirationInDays",
    "AbortIncompleteMultipartUpload",
    "ExpiredObjectDeleteMarker",
}


def _lifecycle_rule(rule: dict[str, Any], at: str) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape PutBucketLifecycleConfiguration takes."""
    unknown = sorted(set(rule) - _LIFECYCLE_KEYS)
    if unknown:
        raise TemplateError(f"{at}: the local stack does not translate {unknown}")
    out: dict[str, Any] = {"Status": rule.get("Status", "Enabled"), "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = _int(rule["ExpirationInDays"], f"{at}.ExpirationInDays")
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = _bool(rule["ExpiredObjectDeleteMarker"], at)
    if expiration:
        out["Expiration"] = expiration
    nve = rule.get("NoncurrentVersionExpiration")
    if nve is not None:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": _int(nve.get("NoncurrentDays"), f"{at}.NoncurrentVersionExpiration")}
        if "NewerNoncurrentVersions" in nve:
            out["NoncurrentVersionExpiration"]["NewerNoncurrentVersions"] = _int(nve["NewerNoncurrentVersions"], at)
    elif "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": _int(rule["NoncurrentVersionExpirationInDays"], at)}
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort is not None:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": _int(abort.get("DaysAfterInitiation"), f"{at}.AbortIncompleteMultipartUpload")}
    return out


def s3_trigger(rule: TriggerRule) -> list[tuple[str, str]]:
    """(bucket, key prefix) pairs an S3 "Object Created" rule matches, for the edge's trigger.

    The edge emulates only this shape of pattern; anything else is an error naming it.
    """
    p = rule.event_pattern
    where = f"{rule.logical_id}.EventPattern"
    if p.get("source") != ["aws.s3"] or p.get("detail-type") != ["Object Created"]:
        raise TemplateError(f"{where}: the local stack emulates only source [aws.s3] / detail-type [Object Created], got {p}")
    unknown = sorted(set(p) - {"source", "detail-type", "detail"})
    detail = p.get("detail") or {}
    unknown += sorted(f"detail.{k}" for k in set(detail) - {"bucket", "object"})
    unknown += sorted(f"detail.bucket.{k}" for k in set(detail.get("bucket") or {}) - {"name"})
    unknown += sorted(f"detail.object.{k}" for k in set(detail.get("object") or {}) - {"key"})
    if unknown:
        raise TemplateError(f"{where}: the local stack cannot emulate the filters {unknown}")
    buckets = (detail.get("bucket") or {}).get("name")
    if not isinstance(buckets, list) or not buckets or not all(isinstance(b, str) for b in buckets):
        raise TemplateError(f"{where}: detail.bucket.name must list bucket names, got {buckets!r}")
    keys = (detail.get("object") or {}).get("key", [{"prefix": ""}])
    prefixes = []
    for k in keys if isinstance(keys, list) else [keys]:
        if isinstance(k, dict) and set(k) == {"prefix"} and isinstance(k["prefix"], str):
            prefixes.append(k["prefix"])
        else:
            raise TemplateError(f"{where}: detail.object.key: the local stack emulates only [{{prefix: ...}}], got {k!r}")
    return [(b, pre) for b in buckets for pre in prefixes]
