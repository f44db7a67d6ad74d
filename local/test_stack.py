"""Unit tests of local/stack.py's pure parts and its process handling (no moto, no cargo)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402


def _up_args(*extra: str):
    return stack.parser().parse_args(["up", *extra])


def test_options_become_template_parameter_overrides():
    args = _up_args("--quota-scale", "20", "--chunk-size", "50", "--reserve", "0.25", "--parameter", "QuotaAttachPolicy=7")
    over = stack.parameter_overrides(args, stack.DEFAULT_TEMPLATE)
    defaults = stack.template.parameter_defaults(stack.DEFAULT_TEMPLATE)
    assert over["ChunkSize"] == "50" and over["QuotaReserve"] == "0.25"
    assert over["QuotaRegisterCertificateWithoutCA"] == f"{float(defaults['QuotaRegisterCertificateWithoutCA']) * 20:g}"
    assert over["QuotaAttachPolicy"] == "7"  # an explicit value wins over the scale
    assert "MaxConcurrency" not in over  # not given: the template's default
    assert stack.parameter_overrides(_up_args(), stack.DEFAULT_TEMPLATE) == stack.LOCAL_PARAMETERS
    assert stack.parameter_overrides(_up_args("--parameter", "AllowedPolicies=thingpress-*"), stack.DEFAULT_TEMPLATE)[
        "AllowedPolicies"
    ] == "thingpress-*"
    with pytest.raises(stack.StackError, match="NAME=VALUE"):
        stack.parameter_overrides(_up_args("--parameter", "oops"), stack.DEFAULT_TEMPLATE)


def test_up_passes_the_detach_delay_to_the_edge(tmp_path):
    ports = {"edge": 1, "moto": 2}
    cmd = stack.edge_command(_up_args("--detach-propagation-seconds", "2.5"), ports, tmp_path / "f.json", stack.DEFAULT_TEMPLATE)
    assert cmd[cmd.index("--detach-propagation-seconds") + 1] == "2.5"
    assert "--detach-propagation-seconds" not in stack.edge_command(_up_args(), ports, tmp_path / "f.json", stack.DEFAULT_TEMPLATE)


def test_function_env_is_the_templates_plus_local_access():
    st = stack.load_stack(stack.DEFAULT_TEMPLATE, {"ChunkSize": "50"}, "thingpress", "bkt")
    envs = {lid: stack.function_env(f, 4566) for lid, f in st.functions.items()}
    for lid, env in envs.items():
        f = st.functions[lid]
        assert {k: env[k] for k in f.environment} == f.environment
        assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
        assert env["AWS_ACCESS_KEY_ID"] == lid
        assert env["IMPORT_BUCKET"] == "bkt" and env["DEFAULT_CHUNK_SIZE"] == "50"
    common = stack.common_env(list(envs.values()))
    assert "AWS_ACCESS_KEY_ID" not in common
    assert common["DEFAULT_CHUNK_SIZE"] == "50" and any(k.startswith("QUOTA_") for k in common)


def test_deploy_parts_come_from_the_template():
    st = stack.load_stack(stack.DEFAULT_TEMPLATE, {"ChildExecutionType": "EXPRESS"}, "thingpress", "bkt")
    definition, changed = stack.local_definition(st.state_machine)
    assert changed and all("ProcessorConfig.ExecutionType EXPRESS -> STANDARD" in c for c in changed)

    def processor_types(text):
        found = []

        def walk(node):
            if isinstance(node, dict):
                if isinstance(node.get("ProcessorConfig"), dict):
                    found.append(node["ProcessorConfig"].get("ExecutionType"))
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(json.loads(text))
        return found

    assert "EXPRESS" in processor_types(st.state_machine.definition)
    assert "EXPRESS" not in processor_types(definition)
    assert stack.edge_triggers(st) == [
        {"bucket": "bkt", "prefix": p, "stateMachineArn": st.state_machine.arn}
        for _, p in stack.template.s3_trigger(st.trigger_rules[0])
    ]
    principals = stack.iam_principals(st)["principals"]
    import iam

    assert stack.OPERATOR_KEY == iam.OPERATOR_KEY
    assert set(principals) == set(st.functions) | {st.state_machine.logical_id, st.trigger_rules[0].logical_id, iam.OPERATOR_KEY}
    assert principals["SplitFunction"]["statements"] == st.functions["SplitFunction"].role_statements


def test_stop_ends_the_whole_tree_and_never_a_recycled_pid(tmp_path):
    # A child in its own session that starts a grandchild in yet another session (as cargo
    # lambda watch does with function instances).
    script = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)'], start_new_session=True); time.sleep(60)"
    cmd = [sys.executable, "-c", script]
    proc = subprocess.Popen(cmd, start_new_session=True)
    info = {"pid": proc.pid, "cmd": cmd, "proc": proc}
    deadline = time.monotonic() + 5
    while len(stack._tree(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = stack._tree(proc.pid)
    assert len(tree) == 2
    assert stack.is_ours(info)
    assert not stack.is_ours({"pid": proc.pid, "cmd": ["something", "else"]})
    stack.stop("test", info, grace=5)
    assert proc.returncode is not None
    time.sleep(0.2)
    assert not [p for p in tree if Path(f"/proc/{p}").exists() and not stack._zombie(p)]
    assert not stack.is_ours(info)


def test_deploy_refuses_a_template_that_changes_the_running_functions():
    st = stack.load_stack(stack.DEFAULT_TEMPLATE, {}, "thingpress", "bkt")
    state = {
        "functions": {lid: {"name": f.name, "binary": f.binary, "timeout": f.timeout} for lid, f in st.functions.items()},
        "functionEnvs": {lid: stack.function_env(f, 4566) for lid, f in st.functions.items()},
    }
    assert stack.drift(state, st, 4566) == []
    changed = stack.load_stack(stack.DEFAULT_TEMPLATE, {"ChunkSize": "3"}, "thingpress", "bkt")
    assert any("environment differs" in d for d in stack.drift(state, changed, 4566))
    state["functions"]["SplitFunction"]["timeout"] = 1
    assert any(d.startswith("SplitFunction:") for d in stack.drift(state, st, 4566))


# ---------------------------------------------------------------- DynamoDB tables


def _budget_stack(tmp_path, **parameters):
    from test_template import _with_tables, _write

    path = _write(tmp_path, _with_tables())
    return stack.load_stack(path, parameters, "tp", "bkt")


def test_budget_table_reaches_every_functions_env_and_script_local_env(tmp_path, monkeypatch, capsys):
    st = _budget_stack(tmp_path)
    envs = {lid: stack.function_env(f, 4566) for lid, f in st.functions.items()}
    common = stack.common_env(list(envs.values()))
    assert common["BUDGET_TABLE"] == st.tables["BudgetTable"].name == "tp-budget"
    state_file = tmp_path / "stack.json"
    state_file.write_text(json.dumps({"endpoint": "http://127.0.0.1:4566", "bucket": "bkt", "functionEnv": common}))
    monkeypatch.setattr(stack, "STATE_FILE", state_file)
    assert stack.cmd_env(None) == 0
    assert "export THINGPRESS_BUDGET_TABLE='tp-budget'\n" in capsys.readouterr().out
    # A shared table named by the parameter: nothing to create, the name goes through as is.
    shared = _budget_stack(tmp_path, BudgetTableName="shared-budget")
    assert "BudgetTable" not in shared.tables
    assert all(f.environment["BUDGET_TABLE"] == "shared-budget" for f in shared.functions.values())


def test_deploy_tables_creates_each_table_once_with_its_ttl(tmp_path):
    import boto3
    from moto import mock_aws

    st = _budget_stack(tmp_path)
    tables = list(st.tables.values())
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=stack.REGION, aws_access_key_id="test", aws_secret_access_key="test")
        stack.deploy_tables(ddb, tables)
        assert sorted(ddb.list_tables()["TableNames"]) == ["tp-Unnamed", "tp-budget"]
        desc = ddb.describe_table(TableName="tp-budget")["Table"]
        assert desc["KeySchema"] == tables[0].key_schema and desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = ddb.describe_time_to_live(TableName="tp-budget")["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
        assert ddb.describe_time_to_live(TableName="tp-Unnamed")["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
        # A redeploy keeps the table and its items.
        ddb.put_item(TableName="tp-budget", Item={"pk": {"S": "holders"}, "sk": {"S": "r#chunk-00000"}})
        stack.deploy_tables(ddb, tables)
        assert ddb.scan(TableName="tp-budget")["Count"] == 1
        # A table of that name with other keys is an error naming both.
        ddb.delete_table(TableName="tp-budget")
        ddb.create_table(
            TableName="tp-budget",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        with pytest.raises(stack.StackError, match="tp-budget exists with keys"):
            stack.deploy_tables(ddb, tables)


def test_the_operator_policy_may_name_the_budget_table(tmp_path):
    import iam

    st = _budget_stack(tmp_path)
    assert stack.budget_table(st) == "tp-budget"
    grant = {
        "Effect": "Allow",
        "Action": "dynamodb:Query",
        "Resource": "arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${BudgetTableName}",
    }
    policy = {"Version": "2012-10-17", "Statement": [grant]}
    args = (policy, "bkt", "arn:aws:states:us-east-1:123456789012:stateMachine:tp-import", "us-east-1", "123456789012", "tp")
    entry = iam.operator_principal(*args, stack.budget_table(st))
    assert entry["statements"][0]["Resource"] == "arn:aws:dynamodb:us-east-1:123456789012:table/tp-budget"
    with pytest.raises(ValueError, match=r"no value for \$\{BudgetTableName\}"):
        iam.operator_principal(*args)


def test_the_real_templates_budget_table_reaches_functionenv():
    st = stack.load_stack(stack.DEFAULT_TEMPLATE, {}, "thingpress", "bkt")
    common = stack.common_env([stack.function_env(f, 4566) for f in st.functions.values()])
    assert common["BUDGET_TABLE"] == st.tables["BudgetTable"].name == stack.budget_table(st) == "thingpress-budget"
    assert st.tables["BudgetTable"].ttl_attribute == "expiresAt"
    shared = stack.load_stack(stack.DEFAULT_TEMPLATE, {"BudgetTableName": "other-budget"}, "thingpress", "bkt")
    assert shared.tables == {} and stack.budget_table(shared) == "other-budget"
