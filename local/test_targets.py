"""Profile targets on the local stack: other accounts and Regions, against a real moto server
through the edge, with boto3. AssumeRole is enforced as AWS does it (the caller's identity
policy, the role's existence, its trust policy, the external id); calls under the issued
credentials are authorized by the assumed role's policies, in its account; IoT data, quotas,
faults, counters and the edge's IoT records are per account and Region.

Run: .venv/bin/python -m pytest local/test_targets.py -q   (starts moto on a free port)
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import edge  # noqa: E402
import iam  # noqa: E402
import stack  # noqa: E402
from test_edge_iot import _free_port  # noqa: E402

HOME, TARGET = "123456789012", "222222222222"
EXT = "ext-4711"
SPLIT_ROLE = f"arn:aws:iam::{HOME}:role/thingpress-SplitFunctionRole"
REGISTER_ROLE = f"arn:aws:iam::{HOME}:role/thingpress-RegisterFunctionRole"
TARGET_ROLE = f"arn:aws:iam::{TARGET}:role/thingpress-target"
ASSUME_TARGETS = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::*:role/thingpress-target*"}
IOT_ANYWHERE = {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}


def _principal(name: str, role: str, statements: list[dict]) -> dict:
    return {"name": name, "arn": f"arn:aws:sts::{HOME}:assumed-role/{role}/thingpress-{name.lower()}", "statements": statements}


PRINCIPALS = {
    "principals": {
        "SplitFunction": _principal("SplitFunction", "thingpress-SplitFunctionRole", [ASSUME_TARGETS, IOT_ANYWHERE]),
        "RegisterFunction": _principal("RegisterFunction", "thingpress-RegisterFunctionRole", [IOT_ANYWHERE]),
        # Allowed to call AssumeRole, but the target role does not trust it.
        "DecorateFunction": _principal("DecorateFunction", "thingpress-DecorateFunctionRole", [ASSUME_TARGETS]),
    }
}


def _client(url: str, service: str, key: str = "test", region: str = "us-east-1", secret: str = "test", token: str | None = None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """moto and an edge in front of it (quotas off), the target role deployed in 222222222222
    as `script/local deploy --target-account` deploys it, and the functions' principals."""
    edge_port, moto_port = _free_port(), _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    moto = subprocess.Popen(
        [sys.executable, str(HERE / "moto_server.py"), "--port", str(moto_port), "--edge-port", str(edge_port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state = edge.EdgeState(quotas=edge.QuotaConfig(enabled=False), rng=random.Random(1))
    server = edge.EdgeServer(("127.0.0.1", edge_port), state, f"http://127.0.0.1:{moto_port}", None)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    moto_url = f"http://127.0.0.1:{moto_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{moto_url}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or moto.poll() is not None:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.2)
        state.set_iam(PRINCIPALS)
        assert stack.deploy_target_role(moto_url, TARGET, [SPLIT_ROLE, REGISTER_ROLE], EXT) == TARGET_ROLE
        yield {"url": f"http://127.0.0.1:{edge_port}", "moto": moto_url, "state": state}
    finally:
        server.shutdown()
        server.server_close()
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
        log.close()


@pytest.fixture()
def st(env):
    env["state"].reset()
    env["state"].set_iot({"detachPropagationSeconds": 0})
    return env


def _assume(url: str, key: str = "SplitFunction", role: str = TARGET_ROLE, external_id: str | None = EXT) -> dict:
    kw = {"RoleArn": role, "RoleSessionName": f"thingpress-{uuid.uuid4().hex[:8]}"}
    if external_id is not None:
        kw["ExternalId"] = external_id
    return _client(url, "sts", key).assume_role(**kw)


def _session(url: str, service: str, creds: dict, region: str = "eu-west-1"):
    c = creds["Credentials"]
    return _client(url, service, c["AccessKeyId"], region, c["SecretAccessKey"], c["SessionToken"])


def _error(call, **kw) -> tuple[int, str, str]:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        call(**kw)
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"].get("Message", "")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- AssumeRole


def test_assume_role_issues_credentials_of_the_target_account(st):
    creds = _assume(st["url"])
    assert creds["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert creds["AssumedRoleUser"]["Arn"].startswith(f"arn:aws:sts::{TARGET}:assumed-role/thingpress-target/")
    sessions = st["state"].iam_config()["sessions"]
    assert sessions[creds["Credentials"]["AccessKeyId"]]["account"] == TARGET
    assert sessions[creds["Credentials"]["AccessKeyId"]]["roleArn"] == TARGET_ROLE
    # moto maps the key to the role's account (GetCallerIdentity needs no permission).
    assert _session(st["url"], "sts", creds, "us-east-1").get_caller_identity()["Account"] == TARGET


@pytest.mark.parametrize(
    "key, role, external_id",
    [
        ("SplitFunction", TARGET_ROLE, "ext-wrong"),  # wrong external id
        ("SplitFunction", TARGET_ROLE, None),  # no external id
        ("SplitFunction", f"arn:aws:iam::{TARGET}:role/thingpress-target-missing", EXT),  # no such role
        ("SplitFunction", f"arn:aws:iam::333333333333:role/thingpress-target", EXT),  # nor in that account
        ("DecorateFunction", TARGET_ROLE, EXT),  # the trust policy does not name its role
    ],
)
def test_assume_role_refused_as_aws_refuses_it(st, key, role, external_id):
    status, code, message = _error(_assume, url=st["url"], key=key, role=role, external_id=external_id)
    caller = PRINCIPALS["principals"][key]["arn"]
    assert (status, code) == (403, "AccessDenied")
    # The same words whatever the reason: AWS tells the caller nothing about the other account.
    assert message == f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role}"
    assert st["state"].snapshot()["iam"]["recent"][-1]["action"] == "sts:AssumeRole"


def test_assume_role_needs_the_callers_identity_policy(st):
    # RegisterFunction's policy here has no sts:AssumeRole, though the role trusts it.
    status, code, message = _error(_assume, url=st["url"], key="RegisterFunction")
    assert (status, code) == (403, "AccessDenied")
    assert message.startswith(f"User: {PRINCIPALS['principals']['RegisterFunction']['arn']} is not authorized to perform: sts:AssumeRole on resource: {TARGET_ROLE}")


def test_sts_error_is_the_query_protocol_xml(st):
    req = urllib.request.Request(
        st["url"] + "/",
        data=f"Action=AssumeRole&Version=2011-06-15&RoleArn={TARGET_ROLE}&RoleSessionName=s&ExternalId=nope".encode(),
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=SplitFunction/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    body = e.value.read().decode()
    assert e.value.code == 403
    assert body.startswith('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code>')
    assert "<RequestId>" in body


# ---------------------------------------------------------------- calls under the assumed role


def test_calls_under_the_assumed_role_are_authorized_by_its_policy_in_its_account(st):
    creds = _assume(st["url"])
    iot = _session(st["url"], "iot", creds)
    thing = _name("thing")
    iot.create_thing(thingName=thing)
    assert iot.describe_thing(thingName=thing)["thingArn"] == f"arn:aws:iot:eu-west-1:{TARGET}:thing/{thing}"
    # The role grants no CreateThingType, and nothing outside IoT.
    status, code, message = _error(iot.create_thing_type, thingTypeName=_name("type"))
    assert (status, code) == (403, "AccessDeniedException")
    assert message.startswith(f"User: arn:aws:sts::{TARGET}:assumed-role/thingpress-target/")
    assert f"iot:CreateThingType on resource: arn:aws:iot:eu-west-1:{TARGET}:thingtype/" in message
    assert _error(_session(st["url"], "s3", creds).list_objects_v2, Bucket="thingpress-local")[0] == 403


def test_resources_in_the_target_account_are_not_visible_at_home(st):
    creds = _assume(st["url"])
    thing = _name("thing")
    _session(st["url"], "iot", creds).create_thing(thingName=thing)
    for region in ("eu-west-1", "us-east-1"):
        home = _client(st["url"], "iot", region=region)
        assert _error(home.describe_thing, thingName=thing)[1] == "ResourceNotFoundException"
    # Same account, other Region: not there either.
    assert _error(_session(st["url"], "iot", creds, "us-east-1").describe_thing, thingName=thing)[1] == "ResourceNotFoundException"


def test_home_credentials_in_another_region_are_another_iot(st):
    thing = _name("thing")
    _client(st["url"], "iot", "SplitFunction", "eu-west-1").create_thing(thingName=thing)
    assert _client(st["url"], "iot", region="eu-west-1").describe_thing(thingName=thing)["thingArn"].startswith(f"arn:aws:iot:eu-west-1:{HOME}:")
    assert _error(_client(st["url"], "iot").describe_thing, thingName=thing)[1] == "ResourceNotFoundException"


def test_temporary_credentials_not_issued_through_the_edge_are_refused(st):
    direct = _client(st["moto"], "sts").assume_role(RoleArn=TARGET_ROLE, RoleSessionName="behind-the-edge", ExternalId=EXT)
    status, _, message = _error(_session(st["url"], "iot", direct).list_things)
    assert status == 403 and "not issued by an AssumeRole through the edge" in message


def test_target_resources_route_and_deleting_the_role(st):
    group, ttype = _name("group"), _name("type")
    body = {"account": TARGET, "region": "eu-west-1", "thingTypes": [ttype], "thingGroups": [group], "policies": {"p-" + group: stack.default_policy("eu-west-1", TARGET)}}
    out = _post(st["url"] + "/_edge/targets/resources", body)
    assert out["created"] == {"thingTypes": [ttype], "thingGroups": [group], "policies": ["p-" + group]}
    assert _post(st["url"] + "/_edge/targets/resources", body)["existing"]["thingGroups"] == [group]
    creds = _assume(st["url"])
    iot = _session(st["url"], "iot", creds)
    assert iot.describe_thing_group(thingGroupName=group)["thingGroupArn"] == f"arn:aws:iot:eu-west-1:{TARGET}:thinggroup/{group}"
    assert iot.describe_thing_type(thingTypeName=ttype)["thingTypeName"] == ttype
    assert _error(_client(st["url"], "iot", region="eu-west-1").describe_thing_group, thingGroupName=group)[1] == "ResourceNotFoundException"
    with pytest.raises(urllib.error.HTTPError) as e:
        _post(st["url"] + "/_edge/targets/resources", {"account": "2222", "region": "eu-west-1"})
    assert e.value.code == 400

    # A target whose role is gone: its sessions stop working, a new AssumeRole is refused.
    deleted = _post(st["url"] + "/_edge/targets/delete-role", {"roleArn": TARGET_ROLE})
    try:
        assert deleted["deleted"] is True and deleted["sessionsForgotten"] >= 1
        assert _error(iot.describe_thing_group, thingGroupName=group)[0] == 403
        assert _error(_assume, url=st["url"])[1] == "AccessDenied"
        assert _post(st["url"] + "/_edge/targets/delete-role", {"roleArn": TARGET_ROLE})["deleted"] is False
    finally:
        stack.deploy_target_role(st["moto"], TARGET, [SPLIT_ROLE, REGISTER_ROLE], EXT)
    assert _session(st["url"], "iot", _assume(st["url"])).describe_thing_group(thingGroupName=group)


def _post(url: str, body) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


# ---------------------------------------------------------------- per account and Region


def test_stats_show_each_target_apart_from_home(st):
    creds = _assume(st["url"])
    iot = _session(st["url"], "iot", creds)
    thing = _name("thing")
    iot.create_thing(thingName=thing)
    iot.describe_thing(thingName=thing)
    _client(st["url"], "iot").list_things()
    stats = json.loads(urllib.request.urlopen(st["url"] + "/_edge/stats", timeout=5).read())
    assert stats["operations"]["ListThings"]["calls"] == 1
    assert "CreateThing" not in stats["operations"]
    assert stats["operations"]["sts:AssumeRole"]["passed"] == 1
    target = stats["targets"][f"{TARGET}/eu-west-1"]["operations"]
    assert (target["CreateThing"]["passed"], target["DescribeThing"]["passed"]) == (1, 1)


def test_injected_faults_hit_only_their_target(st):
    st["state"].set_faults({"targets": {f"{TARGET}/eu-west-1": {"*": {"throttle": 1.0}}}})
    creds = _assume(st["url"])
    missing = _name("missing")
    assert _error(_session(st["url"], "iot", creds).describe_thing, thingName=missing)[1] == "ThrottlingException"
    assert _error(_session(st["url"], "iot", creds, "us-west-2").describe_thing, thingName=missing)[1] == "ResourceNotFoundException"
    _client(st["url"], "iot", region="eu-west-1").list_things()
    _client(st["url"], "iot").list_things()
    stats = st["state"].snapshot()
    assert stats["targets"][f"{TARGET}/eu-west-1"]["operations"]["DescribeThing"]["throttledInjected"] == 1
    assert stats["targets"][f"{TARGET}/us-west-2"]["operations"]["DescribeThing"]["throttledInjected"] == 0
    assert stats["operations"]["ListThings"]["throttledInjected"] == 0


def test_faults_scope_overrides_everywhere_and_is_validated():
    state = edge.EdgeState(quotas=edge.QuotaConfig(enabled=False), rng=random.Random(1))
    state.set_faults({"iot": {"*": {"throttle": 1.0}}, "targets": {f"{TARGET}/eu-west-1": {"ListThings": {"throttle": 0.0}}}})
    assert state.decide_iot("ListThings").action == "respond"
    assert state.decide_iot("ListThings", f"{TARGET}/eu-west-1").action == "forward"
    assert state.decide_iot("DescribeThing", f"{TARGET}/eu-west-1").action == "respond"
    for bad in ({"targets": {"eu-west-1": {}}}, {"targets": {f"{TARGET}/eu-west-1": {"*": {"crash": 1}}}}, {"targets": []}):
        with pytest.raises(ValueError):
            edge.validate_faults(bad)


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_quota_buckets_are_per_account_and_region():
    state = edge.EdgeState(quotas=edge.QuotaConfig(rates={"CreateThing": 2.0}), clock=_Clock(), rng=random.Random(1))
    eu = f"{TARGET}/eu-west-1"
    assert [state.decide_iot("CreateThing").action for _ in range(3)] == ["forward", "forward", "respond"]
    assert [state.decide_iot("CreateThing", eu).action for _ in range(3)] == ["forward", "forward", "respond"]
    assert state.decide_iot("CreateThing", f"{HOME}/eu-west-1").action == "forward"
    assert state.snapshot()["targets"][eu]["operations"]["CreateThing"]["throttledQuota"] == 1


def test_iot_records_are_per_account_and_region():
    state = edge.EdgeState(quotas=edge.QuotaConfig(enabled=False), clock=_Clock())
    eu = f"{TARGET}/eu-west-1"
    state.record_attach("t", "arn:p", edge.EXCLUSIVE_THING, eu)
    assert state.principal_type("t", "arn:p", eu) == edge.EXCLUSIVE_THING
    assert state.principal_type("t", "arn:p") == edge.NON_EXCLUSIVE_THING
    state.record_detach("t", "arn:aws:iot:eu-west-1:222222222222:cert/abc", eu)
    assert state.thing_detaching("t", eu) and not state.thing_detaching("t")
    assert state.certificate_detaching("abc", eu) and state.certificate_detaching("abc") is None


def test_service_quotas_answer_in_any_region_and_account(st):
    sq = _client(st["url"], "service-quotas", region="eu-west-1")
    quota = sq.list_service_quotas(ServiceCode="iot")["Quotas"][0]
    assert quota["QuotaArn"].startswith(f"arn:aws:servicequotas:eu-west-1:{HOME}:iot/")
    answer = st["state"].service_quotas_answer("ServiceQuotasV20190624.ListServiceQuotas", b'{"ServiceCode": "iot"}', "eu-west-1", TARGET)
    assert json.loads(answer[2])["Quotas"][0]["QuotaArn"].startswith(f"arn:aws:servicequotas:eu-west-1:{TARGET}:iot/")


def test_trust_policy_principal_forms():
    caller = f"arn:aws:sts::{HOME}:assumed-role/r/s"
    doc = lambda principal: {"Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]}  # noqa: E731
    for principal in ("*", {"AWS": "*"}, {"AWS": HOME}, {"AWS": f"arn:aws:iam::{HOME}:root"}, {"AWS": [f"arn:aws:iam::{HOME}:role/r"]}):
        assert iam.trust_allows(doc(principal), caller, HOME, "sts:AssumeRole", {}), principal
    for principal in ({"AWS": TARGET}, {"Service": "lambda.amazonaws.com"}, {"AWS": f"arn:aws:iam::{HOME}:role/other"}):
        assert not iam.trust_allows(doc(principal), caller, HOME, "sts:AssumeRole", {}), principal
    deny = {"Statement": [*doc("*")["Statement"], {"Effect": "Deny", "Principal": "*", "Action": "sts:*"}]}
    assert not iam.trust_allows(deny, caller, HOME, "sts:AssumeRole", {})


# ---------------------------------------------------------------- script/local deploy --target


def test_parse_targets():
    assert stack.parse_targets(["eu-west-1", f"{TARGET}:us-east-1", "eu-west-1"], TARGET) == [(HOME, "eu-west-1"), (TARGET, "us-east-1")]
    assert stack.parse_targets([], TARGET) == [(TARGET, "us-east-1")]
    for bad, account in ((["2222:eu-west-1"], None), ([f"{TARGET}:eu-west-1"], None), ([f"{TARGET}:"], TARGET)):
        with pytest.raises(stack.StackError):
            stack.parse_targets(bad, account)


def test_deploy_targets_creates_the_role_and_each_targets_resources(st):
    import argparse

    import template

    tpl = template.load(stack.DEFAULT_TEMPLATE, dict(stack.LOCAL_PARAMETERS), region="us-east-1", account_id=HOME, stack_name="thingpress")
    group = _name("group")
    args = argparse.Namespace(
        target=[f"{TARGET}:eu-west-1"], target_region=["us-west-2"], target_account=TARGET, external_id=EXT, target_role_name="thingpress-target"
    )
    res = {"thingTypes": ["thingpress-device"], "thingGroups": [group], "policies": {"thingpress-device": stack.DEFAULT_POLICY}}
    out = stack.deploy_targets(args, {"ports": {"moto": st["moto"].rsplit(":", 1)[1]}, "endpoint": st["url"]}, tpl, res)
    assert out == [
        {"account": TARGET, "region": "eu-west-1", "roleArn": TARGET_ROLE, "externalId": EXT},
        {"account": HOME, "region": "us-west-2", "roleArn": None, "externalId": None},
    ]
    iot = _session(st["url"], "iot", _assume(st["url"]))
    assert iot.describe_thing_group(thingGroupName=group)
    policy = json.loads(iot.get_policy(policyName="thingpress-device")["policyDocument"])
    assert policy["Statement"][0]["Resource"].startswith(f"arn:aws:iot:eu-west-1:{TARGET}:client/")
    assert _client(st["url"], "iot", region="us-west-2").describe_thing_group(thingGroupName=group)
    with pytest.raises(stack.StackError):
        stack.deploy_targets(argparse.Namespace(**{**vars(args), "external_id": None}), {}, tpl, res)
