"""Tests of local/template.py: the real infra/template.yaml and small synthetic templates,
translated by aws-sam-translator and resolved offline.

Run: .venv/bin/python -m pytest local/test_template.py -q   (no moto or cargo needed)
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import template  # noqa: E402

REAL = HERE.parent / "infra" / "template.yaml"
KW = {"region": "us-east-1", "account_id": "123456789012", "stack_name": "tp"}


def _raw(path: Path = REAL) -> dict:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(path.read_text())


def _strings(value):
    """Every leaf of a resolved value (an unresolved intrinsic would leave a dict behind)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    else:
        yield value


# ---------------------------------------------------------------- the real template


@pytest.fixture(scope="module")
def real():
    return template.load(REAL, {}, physical_names={"ImportBucket": "bkt"}, **KW)


def test_real_functions_are_the_templates(real):
    raw = _raw()
    sam_functions = {k for k, v in raw["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert set(real.functions) == sam_functions and sam_functions
    globals_env = set(raw["Globals"]["Function"]["Environment"]["Variables"])
    for lid, f in real.functions.items():
        props = raw["Resources"][lid]["Properties"]
        assert f.binary == raw["Resources"][lid]["Metadata"]["BuildProperties"]["Binary"]
        assert f.name.startswith("tp-") and f.arn == f"arn:aws:lambda:us-east-1:123456789012:function:{f.name}"
        assert f.memory == props.get("MemorySize", raw["Globals"]["Function"].get("MemorySize"))
        if isinstance(props.get("Timeout"), int):
            assert f.timeout == props["Timeout"]
        assert globals_env <= set(f.environment)
        assert f.environment["IMPORT_BUCKET"] == "bkt"
        assert all(isinstance(v, str) and "${" not in v for v in f.environment.values())
        # SAM turned `Policies:` into a generated role whose statements are the template's.
        assert f.role_logical_id == f"{lid}Role"
        sids = [s.get("Sid") for s in f.role_statements]
        assert sids == [s.get("Sid") for p in props["Policies"] for s in p["Statement"]]


def test_real_statements_are_fully_resolved(real):
    for role in real.roles.values():
        for st in role.statements:
            for leaf in _strings(st):
                assert isinstance(leaf, (str, bool, int)), (role.logical_id, st)
                assert "${" not in str(leaf) and "Fn::" not in str(leaf), (role.logical_id, st)
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            assert all(r == "*" or r.startswith("arn:aws:") for r in resources), st
    split = real.functions["SplitFunction"]
    assert any(r.startswith("arn:aws:s3:::bkt/") for s in split.role_statements for r in _as_list(s["Resource"]))


def _as_list(v):
    return v if isinstance(v, list) else [v]


def test_real_bucket_state_machine_and_trigger(real):
    raw = _raw()["Resources"]
    assert real.bucket.name == "bkt"
    assert real.bucket.versioned == (raw["ImportBucket"]["Properties"]["VersioningConfiguration"]["Status"] == "Enabled")
    assert real.bucket.encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    rule_ids = [r["Id"] for r in raw["ImportBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]]
    assert [r["ID"] for r in real.bucket.lifecycle["Rules"]] == rule_ids
    assert real.bucket.eventbridge

    sm = real.state_machine
    assert sm.name == "tp-import" and sm.arn.endswith(":stateMachine:tp-import")
    doc = json.loads(sm.definition)
    text = json.dumps(doc)
    assert "${" not in text
    for f in real.functions.values():
        assert f.arn in text
    assert set(sm.substitutions) == set(raw["ImportStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert sm.role.logical_id == "ImportStateMachineRole"
    assert any("lambda:InvokeFunction" in _as_list(s["Action"]) for s in sm.role_statements)

    [rule] = real.trigger_rules
    assert rule.target_arn == sm.arn
    assert rule.role_statements and rule.role_statements[0]["Resource"] == sm.arn
    prefix = raw["ImportTriggerRule"]["Properties"]["EventPattern"]["detail"]["object"]["key"][0]["prefix"]
    assert template.s3_trigger(rule) == [("bkt", prefix)]


def test_real_parameters_flow_into_env_timeouts_and_definition():
    s = template.load(REAL, {"ChunkSize": "7", "ChildExecutionType": "EXPRESS"}, **KW)
    env = s.functions["SplitFunction"].environment
    assert env["DEFAULT_CHUNK_SIZE"] == "7"
    expected = _raw()["Resources"]["RegisterFunction"]["Properties"]["Timeout"]
    if isinstance(expected, dict):  # Fn::If [ChildrenAreExpress, express, standard]
        assert s.functions["RegisterFunction"].timeout == expected["Fn::If"][1]
    assert s.state_machine.substitutions["ChildExecutionType"] == "EXPRESS"
    assert '"EXPRESS"' in s.state_machine.definition
    assert '"STANDARD"' in s.state_machine.definition_with({"ChildExecutionType": "STANDARD"})
    assert s.bucket.name == "tp-importbucket"  # CloudFormation would generate it; here it is derived


def test_bad_parameters_are_errors():
    with pytest.raises(template.TemplateError, match="NoSuchParameter"):
        template.load(REAL, {"NoSuchParameter": "1"}, **KW)
    with pytest.raises(template.TemplateError, match="ChildExecutionType"):
        template.load(REAL, {"ChildExecutionType": "SOMETIMES"}, **KW)
    with pytest.raises(template.TemplateError, match="ChunkSize"):
        template.load(REAL, {"ChunkSize": "many"}, **KW)


# ---------------------------------------------------------------- synthetic templates

SYNTHETIC = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Mode:
    Type: String
    Default: a
    AllowedValues: [a, b]
  Names:
    Type: CommaDelimitedList
    Default: "x,y"
Conditions:
  IsB: !Equals [!Ref Mode, b]
  NotB: !Not [!Condition IsB]
Globals:
  Function:
    Timeout: 30
    Environment:
      Variables:
        BUCKET: !Ref Store
        NAMES: !Join [",", !Ref Names]
Resources:
  Store:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${AWS::StackName}-store-${AWS::Region}"
  WorkFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: work
    Properties:
      FunctionName: !Sub "${AWS::StackName}-work"
      CodeUri: ../
      Handler: bootstrap
      Runtime: provided.al2023
      Timeout: !If [IsB, 60, !Ref AWS::NoValue]
      MemorySize: 1024
      Environment:
        Variables:
          MODE: !If [NotB, "not-b", "b"]
          LITERAL: !Sub "${!Kept}"
          WITH_VARS: !Sub ["${P}/${Store.Arn}", {P: !Ref AWS::Partition}]
          DROPPED: !If [IsB, "x", !Ref AWS::NoValue]
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: s3:GetObject
              Resource: !Sub "${Store.Arn}/in/*"
            - Effect: Allow
              Action: iot:GetPolicy
              Resource: !Sub "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:policy/*"
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      Name: !Sub "${AWS::StackName}-m"
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions:
        WorkArn: !GetAtt WorkFunction.Arn
      Role: !GetAtt MachineRole.Arn
  MachineRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: states.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: Run
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: lambda:InvokeFunction
                Resource: [!GetAtt WorkFunction.Arn, !Sub "${WorkFunction.Arn}:*"]
"""

MACHINE = '{"StartAt": "W", "States": {"W": {"Type": "Task", "Resource": "${WorkArn}", "End": true}}}'


def _write(tmp_path: Path, text: str, machine: str = MACHINE) -> Path:
    (tmp_path / "machine.asl.json").write_text(machine)
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_synthetic_template_resolves_every_intrinsic(tmp_path):
    s = template.load(_write(tmp_path, SYNTHETIC), {}, region="eu-west-1", account_id="111122223333", stack_name="s1")
    f = s.functions["WorkFunction"]
    # AWS::NoValue removes the function's Timeout: Lambda's default, not the Globals' value.
    assert (f.name, f.binary, f.timeout, f.memory) == ("s1-work", "work", 3, 1024)
    assert f.environment == {
        "BUCKET": "s1-store-eu-west-1",
        "NAMES": "x,y",
        "MODE": "not-b",
        "LITERAL": "${Kept}",
        "WITH_VARS": "aws/arn:aws:s3:::s1-store-eu-west-1",
    }
    assert f.role_statements == [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::s1-store-eu-west-1/in/*"},
        {"Effect": "Allow", "Action": "iot:GetPolicy", "Resource": "arn:aws:iot:eu-west-1:111122223333:policy/*"},
    ]
    sm = s.state_machine
    assert sm.name == "s1-m" and sm.type == "STANDARD"
    assert json.loads(sm.definition)["States"]["W"]["Resource"] == f.arn
    assert sm.role.arn == "arn:aws:iam::111122223333:role/s1-MachineRole"
    assert sm.role_statements[0]["Resource"] == [f.arn, f"{f.arn}:*"]
    assert s.trigger_rules == [] and not s.bucket.versioned and s.bucket.lifecycle is None

    b = template.load(_write(tmp_path, SYNTHETIC), {"Mode": "b", "Names": "p"}, **KW)
    fb = b.functions["WorkFunction"]
    assert fb.timeout == 60 and fb.environment["MODE"] == "b" and fb.environment["DROPPED"] == "x"
    assert fb.environment["NAMES"] == "p"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("LITERAL: !Sub \"${!Kept}\"", "LITERAL: !ImportValue shared-thing", "Fn::ImportValue"),
        ("LITERAL: !Sub \"${!Kept}\"", "LITERAL: !GetAtt Store.WebsiteURL", "Store.WebsiteURL"),
        ("LITERAL: !Sub \"${!Kept}\"", "LITERAL: !Ref AWS::NotificationARNs", "AWS::NotificationARNs"),
        ("LITERAL: !Sub \"${!Kept}\"", "LITERAL: !Sub \"${Nowhere}\"", "Nowhere"),
        ("        Binary: work\n", "        Other: work\n", "Binary"),
        ("Resource: !Sub \"${Store.Arn}/in/*\"", "Resource: !FindInMap [M, k, v]", "Fn::FindInMap"),
    ],
)
def test_unresolvable_intrinsics_are_errors_naming_them(tmp_path, old, new, message):
    assert old in SYNTHETIC
    with pytest.raises(template.TemplateError, match=message.replace(".", r"\.").replace("$", r"\$")) as e:
        template.load(_write(tmp_path, SYNTHETIC.replace(old, new)), {}, **KW)
    assert "WorkFunction" in str(e.value) or "Binary" in message


def test_definition_substitution_missing_or_breaking_json_is_an_error(tmp_path):
    with pytest.raises(template.TemplateError, match="OtherArn"):
        template.load(_write(tmp_path, SYNTHETIC, MACHINE.replace("WorkArn", "OtherArn")), {}, **KW)
    with pytest.raises(template.TemplateError, match="not valid JSON"):
        template.load(_write(tmp_path, SYNTHETIC, MACHINE.replace('"${WorkArn}"', "${WorkArn}")), {}, **KW)


def test_s3_trigger_accepts_only_what_the_edge_emulates():
    rule = template.TriggerRule(
        "R",
        "T",
        {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {"bucket": {"name": ["b"]}, "object": {"key": [{"prefix": "in/"}]}}},
        "arn:aws:states:us-east-1:1:stateMachine:m",
        None,
    )
    assert template.s3_trigger(rule) == [("b", "in/")]
    for pattern in (
        {**rule.event_pattern, "source": ["aws.ec2"]},
        {**rule.event_pattern, "detail": {"bucket": {"name": ["b"]}, "object": {"key": [{"suffix": ".json"}]}}},
        {**rule.event_pattern, "detail": {"bucket": {"name": ["b"]}, "object": {"size": [{"numeric": [">", 0]}]}}},
    ):
        with pytest.raises(template.TemplateError):
            template.s3_trigger(template.TriggerRule("R", "T", pattern, rule.target_arn, None))


# ---------------------------------------------------------------- DynamoDB tables

# The budget table as infra/template.yaml declares it (created unless a shared table is named).
TABLE = """
  BudgetTableName:
    Type: String
    Default: ""
Conditions:
  CreateBudgetTable: !Equals [!Ref BudgetTableName, ""]
"""
TABLE_RESOURCES = """
  BudgetTable:
    Type: AWS::DynamoDB::Table
    Condition: CreateBudgetTable
    Properties:
      TableName: !Sub "${AWS::StackName}-budget"
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      TimeToLiveSpecification: {AttributeName: expiresAt, Enabled: true}
      SSESpecification: {SSEEnabled: true}
  Unnamed:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      ProvisionedThroughput: {ReadCapacityUnits: 2, WriteCapacityUnits: "3"}
"""


def _with_tables(text: str = SYNTHETIC, resources: str = TABLE_RESOURCES) -> str:
    text = text.replace("Conditions:\n", TABLE, 1)
    budget_env = '        BUDGET_TABLE: !If [CreateBudgetTable, !Ref BudgetTable, !Ref BudgetTableName]\n'
    text = text.replace("        NAMES: !Join", budget_env + "        NAMES: !Join", 1)
    return text.replace("Resources:\n", "Resources:\n" + resources.lstrip("\n"), 1)


def test_tables_are_named_and_resolved(tmp_path):
    s = template.load(_write(tmp_path, _with_tables()), {}, **KW)
    budget = s.tables["BudgetTable"]
    assert (budget.name, budget.arn) == ("tp-budget", "arn:aws:dynamodb:us-east-1:123456789012:table/tp-budget")
    assert budget.ttl_attribute == "expiresAt"
    assert budget.create_table_request() == {
        "TableName": "tp-budget",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    unnamed = s.tables["Unnamed"]
    assert unnamed.name == "tp-Unnamed" and unnamed.ttl_attribute is None  # generated, not lower-cased
    assert unnamed.create_table_request()["ProvisionedThroughput"] == {"ReadCapacityUnits": 2, "WriteCapacityUnits": 3}
    # Ref gives the name: it reaches the functions' environment.
    assert s.functions["WorkFunction"].environment["BUDGET_TABLE"] == "tp-budget"


def test_a_table_whose_condition_is_false_is_not_created(tmp_path):
    s = template.load(_write(tmp_path, _with_tables()), {"BudgetTableName": "shared-budget"}, **KW)
    assert set(s.tables) == {"Unnamed"}
    assert s.functions["WorkFunction"].environment["BUDGET_TABLE"] == "shared-budget"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("      KeySchema: [{AttributeName: id, KeyType: HASH}]\n", "", "KeySchema"),
        ("ProvisionedThroughput: {ReadCapacityUnits: 2, WriteCapacityUnits: \"3\"}", "BillingMode: ON_DEMAND", "BillingMode"),
        ("{AttributeName: expiresAt, Enabled: true}", "{Enabled: true}", "AttributeName is required"),
        ("Condition: CreateBudgetTable", "Condition: NoSuchCondition", "NoSuchCondition"),
    ],
)
def test_table_errors_name_the_property(tmp_path, old, new, message):
    assert old in TABLE_RESOURCES
    with pytest.raises(template.TemplateError, match=message):
        template.load(_write(tmp_path, _with_tables(resources=TABLE_RESOURCES.replace(old, new))), {}, **KW)


def test_quota_codes_block(tmp_path):
    assert template.quota_codes(_write(tmp_path, SYNTHETIC)) == {}  # none declared
    meta = "Metadata:\n  Thingpress:\n    QuotaCodes:\n      CreateThing: L-64CBACAC\n"
    assert template.quota_codes(_write(tmp_path, meta + SYNTHETIC.lstrip("\n"))) == {"CreateThing": "L-64CBACAC"}
    for bad, message in (
        ("      CreateThing: l-64cbacac\n", "not a Service Quotas code"),
        ("      CreateThing: L-64CBACAC\n      UpdateThing: L-64CBACAC\n", "also another operation's code"),
    ):
        doc = meta.replace("      CreateThing: L-64CBACAC\n", bad) + SYNTHETIC.lstrip("\n")
        with pytest.raises(template.TemplateError, match=message):
            template.quota_codes(_write(tmp_path, doc))
    with pytest.raises(template.TemplateError, match="must map"):
        template.quota_codes(_write(tmp_path, "Metadata:\n  Thingpress:\n    QuotaCodes: [x]\n" + SYNTHETIC.lstrip("\n")))
