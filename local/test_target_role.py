"""infra/target-role.yaml: it lints as plain CloudFormation, resolves locally, trusts exactly
the given role ARNs under the external id, and grants exactly the IoT actions (on the same
resource types, in any Region) that infra/template.yaml gives SplitFunction and
RegisterFunction, so the two cannot drift.

Run: .venv/bin/python -m pytest local/test_target_role.py -q
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import iam  # noqa: E402
import template  # noqa: E402

ROOT = HERE.parent
TARGET_ROLE = ROOT / "infra" / "target-role.yaml"
TEMPLATE = ROOT / "infra" / "template.yaml"
HOME, TARGET = "123456789012", "222222222222"
TRUSTED = [f"arn:aws:iam::{HOME}:role/thingpress-SplitFunctionRole", f"arn:aws:iam::{HOME}:role/thingpress-RegisterFunctionRole"]


def _role(account: str = TARGET, **params: str) -> template.Role:
    values = {"TrustedRoleArns": ",".join(TRUSTED), "ExternalId": "ext-123", **params}
    return template.load_role(TARGET_ROLE, values, logical_id="TargetRole", region="us-east-1", account_id=account, stack_name="thingpress-target")


def _iot_grants(statements: list[dict], region: str) -> dict[str, set[str]]:
    """IoT action -> the resources Allow statements grant, with the Region written as `*`
    (template.yaml's Deny that holds IoT to the stack's Regions is no grant)."""
    out: dict[str, set[str]] = {}
    for st in statements:
        if st["Effect"] != "Allow":
            continue
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        for action in actions:
            if action.startswith("iot:"):
                out.setdefault(action, set()).update(r.replace(f":iot:{region}:", ":iot:*:") for r in resources)
    return out


def test_target_role_grants_the_iot_actions_of_split_and_register():
    # Same account for both sides, so only the Region may differ.
    stack = template.load(TEMPLATE, {}, region="us-east-1", account_id=HOME, stack_name="thingpress")
    functions = {f.logical_id: f for f in stack.functions.values()}
    home = [s for lid in ("SplitFunction", "RegisterFunction") for s in functions[lid].role.statements]
    want = _iot_grants(home, "us-east-1")
    got = _iot_grants(_role(account=HOME).statements, "us-east-1")
    assert set(got) == set(want), f"missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}"
    assert got == want
    # Everything the role grants is IoT, in this account, any Region.
    for st in _role().statements:
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        assert all(r == "*" or r.startswith(f"arn:aws:iot:*:{TARGET}:") for r in resources), st


def test_target_role_grants_scope_something_and_the_function_roles_are_the_trusted_names():
    assert iam.lint({"Statement": _role().statements}) == []
    stack = template.load(TEMPLATE, {}, region="us-east-1", account_id=HOME, stack_name="thingpress")
    roles = {f.logical_id: f.role.arn for f in stack.functions.values()}
    # What `script/local deploy --target-account` passes as TrustedRoleArns.
    assert sorted([roles["SplitFunction"], roles["RegisterFunction"]]) == sorted(TRUSTED)


def test_target_role_trusts_exactly_the_given_roles_with_the_external_id():
    role = _role()
    assert role.name == "thingpress-target"
    assert role.arn == f"arn:aws:iam::{TARGET}:role/thingpress-target"
    trust = role.assume_role_policy
    allow = lambda caller, ext: iam.trust_allows(  # noqa: E731
        trust, caller, HOME, "sts:AssumeRole", {} if ext is None else {"sts:ExternalId": ext}
    )
    split_session = f"arn:aws:sts::{HOME}:assumed-role/thingpress-SplitFunctionRole/thingpress-split"
    assert allow(split_session, "ext-123")
    assert not allow(split_session, "ext-999")
    assert not allow(split_session, None)
    assert not allow(f"arn:aws:sts::{HOME}:assumed-role/thingpress-DecorateFunctionRole/x", "ext-123")
    assert not iam.trust_allows(trust, split_session, HOME, "sts:TagSession", {"sts:ExternalId": "ext-123"})
    assert _role(RoleName="other").arn.endswith(":role/other")


@pytest.mark.parametrize("ext", ["a", "x" * 1225, "has space", "semi;colon"])
def test_external_id_is_checked_as_cloudformation_does(ext):
    with pytest.raises(template.TemplateError):
        _role(ExternalId=ext)


def test_target_role_lints_clean():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if not cfn_lint.exists():
        pytest.skip("cfn-lint is not installed in this venv")
    out = subprocess.run([str(cfn_lint), str(TARGET_ROLE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
