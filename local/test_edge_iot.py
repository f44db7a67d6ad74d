"""The edge's emulation of AWS IoT behaviours moto 5.2.5 lacks (what `thingpress activate` and
`decommission` call), against a real moto server through the edge, with boto3:
thingPrincipalType on AttachThingPrincipal and the V2 listings, UpdateCertificate's REVOKED and
PENDING_* rules, DeleteThing of a missing thing and of a thing in groups, and DetachThingPrincipal's
propagation delay. Plus the state's bookkeeping on a fake clock.

Run: .venv/bin/python -m pytest local/test_edge_iot.py -q   (~6 s; starts moto on a free port)
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import edge  # noqa: E402

EXCLUSIVE = "EXCLUSIVE_THING"
NON_EXCLUSIVE = "NON_EXCLUSIVE_THING"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(url: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "iot",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def moto_iot(tmp_path_factory):
    """moto (as the local stack runs it) and an edge in front of it, quotas off."""
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
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{moto_port}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or moto.poll() is not None:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.2)
        url = f"http://127.0.0.1:{edge_port}"
        yield {"url": url, "state": state, "iot": _client(url), "moto": _client(f"http://127.0.0.1:{moto_port}")}
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
def st(moto_iot):
    """The module's stack with the edge back at its startup config and no detach delay (the
    tests that want one set it)."""
    moto_iot["state"].reset()
    moto_iot["state"].set_iot({"detachPropagationSeconds": 0})
    return moto_iot


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _thing(iot) -> str:
    name = _name("thing")
    iot.create_thing(thingName=name)
    return name


def _cert(iot, active: bool = False) -> tuple[str, str]:
    """(certificateId, certificateArn) of a new certificate."""
    c = iot.create_keys_and_certificate(setAsActive=active)
    return c["certificateId"], c["certificateArn"]


def _error(call, **kw) -> tuple[int, str, str]:
    """(HTTP status, error code, message) of a call that must fail."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        call(**kw)
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"].get("Message", "")


def _post(url: str, obj) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------ thingPrincipalType


def test_exclusive_principal_has_one_thing(st):
    iot = st["iot"]
    a, b = _thing(iot), _thing(iot)
    _, arn = _cert(iot)
    iot.attach_thing_principal(thingName=a, principal=arn, thingPrincipalType=EXCLUSIVE)
    # Re-attaching to the same thing is idempotent.
    iot.attach_thing_principal(thingName=a, principal=arn, thingPrincipalType=EXCLUSIVE)
    for kind in (EXCLUSIVE, NON_EXCLUSIVE):
        status, code, message = _error(iot.attach_thing_principal, thingName=b, principal=arn, thingPrincipalType=kind)
        assert (status, code) == (400, "InvalidRequestException"), kind
        assert arn in message and a in message, message
    status, code, _ = _error(iot.attach_thing_principal, thingName=b, principal=arn)  # default NON_EXCLUSIVE
    assert (status, code) == (400, "InvalidRequestException")
    assert iot.list_principal_things(principal=arn)["things"] == [a]
    # Once detached, the principal is free again (and the type is forgotten).
    iot.detach_thing_principal(thingName=a, principal=arn)
    iot.attach_thing_principal(thingName=b, principal=arn)
    iot.attach_thing_principal(thingName=a, principal=arn)
    assert sorted(iot.list_principal_things(principal=arn)["things"]) == sorted([a, b])


def test_exclusive_attach_counts_attachments_the_edge_never_saw(st):
    iot, moto = st["iot"], st["moto"]
    a, b = _thing(iot), _thing(iot)
    _, arn = _cert(iot)
    moto.attach_thing_principal(thingName=a, principal=arn)  # behind the edge's back
    status, code, message = _error(iot.attach_thing_principal, thingName=b, principal=arn, thingPrincipalType=EXCLUSIVE)
    assert (status, code) == (400, "InvalidRequestException") and a in message
    # Non-exclusive to both is fine; exclusive to the one it is on is an upgrade.
    iot.attach_thing_principal(thingName=a, principal=arn, thingPrincipalType=EXCLUSIVE)
    assert iot.list_thing_principals_v2(thingName=a)["thingPrincipalObjects"] == [
        {"principal": arn, "thingPrincipalType": EXCLUSIVE}
    ]
    _, other = _cert(iot)
    iot.attach_thing_principal(thingName=a, principal=other)
    iot.attach_thing_principal(thingName=b, principal=other)


def test_exclusive_record_of_a_pair_detached_behind_the_edge_is_dropped(st):
    iot, moto = st["iot"], st["moto"]
    a, b = _thing(iot), _thing(iot)
    _, arn = _cert(iot)
    iot.attach_thing_principal(thingName=a, principal=arn, thingPrincipalType=EXCLUSIVE)
    moto.detach_thing_principal(thingName=a, principal=arn)
    iot.attach_thing_principal(thingName=b, principal=arn)
    assert st["state"].exclusive_thing(arn) is None


def test_a_thing_may_hold_several_exclusive_principals(st):
    iot = st["iot"]
    thing = _thing(iot)
    arns = [_cert(iot)[1] for _ in range(2)]
    for arn in arns:
        iot.attach_thing_principal(thingName=thing, principal=arn, thingPrincipalType=EXCLUSIVE)
    got = iot.list_thing_principals_v2(thingName=thing, thingPrincipalType=EXCLUSIVE)["thingPrincipalObjects"]
    assert sorted(o["principal"] for o in got) == sorted(arns)


def test_v2_listings_carry_the_type_and_filter_on_it(st):
    iot = st["iot"]
    thing, other = _thing(iot), _thing(iot)
    _, exclusive = _cert(iot)
    _, shared = _cert(iot)
    iot.attach_thing_principal(thingName=thing, principal=exclusive, thingPrincipalType=EXCLUSIVE)
    iot.attach_thing_principal(thingName=thing, principal=shared, thingPrincipalType=NON_EXCLUSIVE)
    iot.attach_thing_principal(thingName=other, principal=shared)

    objects = iot.list_thing_principals_v2(thingName=thing)["thingPrincipalObjects"]
    assert sorted(objects, key=lambda o: o["principal"]) == sorted(
        [{"principal": exclusive, "thingPrincipalType": EXCLUSIVE}, {"principal": shared, "thingPrincipalType": NON_EXCLUSIVE}],
        key=lambda o: o["principal"],
    )
    only = iot.list_thing_principals_v2(thingName=thing, thingPrincipalType=NON_EXCLUSIVE)["thingPrincipalObjects"]
    assert only == [{"principal": shared, "thingPrincipalType": NON_EXCLUSIVE}]

    assert iot.list_principal_things_v2(principal=exclusive)["principalThingObjects"] == [
        {"thingName": thing, "thingPrincipalType": EXCLUSIVE}
    ]
    things = iot.list_principal_things_v2(principal=shared)["principalThingObjects"]
    assert sorted(o["thingName"] for o in things) == sorted([thing, other])
    assert {o["thingPrincipalType"] for o in things} == {NON_EXCLUSIVE}
    assert iot.list_principal_things_v2(principal=shared, thingPrincipalType=EXCLUSIVE)["principalThingObjects"] == []

    # moto's errors pass through (a thing that does not exist).
    status, code, _ = _error(iot.list_thing_principals_v2, thingName=_name("missing"))
    assert (status, code) == (404, "ResourceNotFoundException")


def test_a_bad_thing_principal_type_is_an_invalid_request(st):
    iot = st["iot"]
    thing = _thing(iot)
    _, arn = _cert(iot)
    for call, kw in (
        (iot.attach_thing_principal, {"thingName": thing, "principal": arn}),
        (iot.list_thing_principals_v2, {"thingName": thing}),
        (iot.list_principal_things_v2, {"principal": arn}),
    ):
        status, code, _ = _error(call, thingPrincipalType="SOMETIMES", **kw)
        assert (status, code) == (400, "InvalidRequestException"), call
    assert iot.list_principal_things(principal=arn)["things"] == []


def test_delete_thing_forgets_its_exclusive_principals():
    state = edge.EdgeState(quotas=edge.QuotaConfig(enabled=False))
    state.record_attach("a", "arn:p", EXCLUSIVE)
    assert state.principal_type("a", "arn:p") == EXCLUSIVE and state.principal_type("b", "arn:p") == NON_EXCLUSIVE
    state.record_attach("a", "arn:p", NON_EXCLUSIVE)  # the latest attach of a pair says its type
    assert state.principal_type("a", "arn:p") == NON_EXCLUSIVE
    state.record_attach("a", "arn:p", EXCLUSIVE)
    state.forget_thing("a")
    assert state.exclusive_thing("arn:p") is None


def test_attach_refusal_rules():
    p = "arn:aws:iot:us-east-1:123456789012:cert/abc"
    assert edge.attach_refusal("b", p, EXCLUSIVE, ["a"], None) is not None
    assert edge.attach_refusal("a", p, EXCLUSIVE, ["a"], None) is None
    assert edge.attach_refusal("b", p, EXCLUSIVE, [], None) is None
    assert edge.attach_refusal("b", p, NON_EXCLUSIVE, ["a"], None) is None
    assert "exclusively attached to thing a" in edge.attach_refusal("b", p, NON_EXCLUSIVE, ["a"], "a")
    assert edge.attach_refusal("a", p, NON_EXCLUSIVE, ["a"], "a") is None
    assert edge.attach_refusal("b", p, NON_EXCLUSIVE, [], "a") is None  # stale record


# ------------------------------------------------------------------ UpdateCertificate


def test_a_revoked_certificate_stays_revoked(st):
    iot = st["iot"]
    cert, _ = _cert(iot, active=True)
    iot.update_certificate(certificateId=cert, newStatus="INACTIVE")
    iot.update_certificate(certificateId=cert, newStatus="REVOKED")
    iot.update_certificate(certificateId=cert, newStatus="REVOKED")  # no change: idempotent
    for new in ("ACTIVE", "INACTIVE"):
        status, code, message = _error(iot.update_certificate, certificateId=cert, newStatus=new)
        assert (status, code) == (406, "CertificateStateException"), new
        assert cert in message
    assert iot.describe_certificate(certificateId=cert)["certificateDescription"]["status"] == "REVOKED"


def test_pending_statuses_cannot_be_set(st):
    iot = st["iot"]
    cert, _ = _cert(iot)
    for new in ("PENDING_TRANSFER", "PENDING_ACTIVATION", "NONSENSE"):
        status, code, _ = _error(iot.update_certificate, certificateId=cert, newStatus=new)
        assert (status, code) == (400, "InvalidRequestException"), new
    assert iot.describe_certificate(certificateId=cert)["certificateDescription"]["status"] == "INACTIVE"
    iot.update_certificate(certificateId=cert, newStatus="ACTIVE")
    assert iot.describe_certificate(certificateId=cert)["certificateDescription"]["status"] == "ACTIVE"
    status, code, _ = _error(iot.update_certificate, certificateId="f" * 64, newStatus="ACTIVE")
    assert (status, code) == (404, "ResourceNotFoundException")  # moto's answer


# ------------------------------------------------------------------ DeleteThing


def test_deleting_a_missing_thing_succeeds(st):
    iot = st["iot"]
    r = iot.delete_thing(thingName=_name("never"))
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    thing = _thing(iot)
    iot.delete_thing(thingName=thing)
    iot.delete_thing(thingName=thing)  # twice: still success


def test_a_deleted_thing_leaves_its_groups(st):
    iot = st["iot"]
    groups = [_name("group") for _ in range(2)]
    for g in groups:
        iot.create_thing_group(thingGroupName=g)
    thing, stays = _thing(iot), _thing(iot)
    for g in groups:
        iot.add_thing_to_thing_group(thingGroupName=g, thingName=thing)
        iot.add_thing_to_thing_group(thingGroupName=g, thingName=stays)
    iot.delete_thing(thingName=thing)
    for g in groups:
        assert iot.list_things_in_thing_group(thingGroupName=g)["things"] == [stays]
    # A new thing of the same name is in no group (moto kept the old memberships by ARN).
    iot.create_thing(thingName=thing)
    assert iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"] == []


def test_a_thing_still_attached_is_not_deleted_and_keeps_its_groups(st):
    iot = st["iot"]
    group = _name("group")
    iot.create_thing_group(thingGroupName=group)
    thing = _thing(iot)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    _, arn = _cert(iot)
    iot.attach_thing_principal(thingName=thing, principal=arn)
    status, code, message = _error(iot.delete_thing, thingName=thing)
    # AWS's status (moto says 409).
    assert (status, code) == (400, "InvalidRequestException")
    assert message == f"Cannot delete. Thing {thing} is still attached to one or more principals"
    assert iot.list_things_in_thing_group(thingGroupName=group)["things"] == [thing]


# ------------------------------------------------------------------ detach propagation


def test_detach_propagates_before_deletes_succeed(st):
    iot, url = st["iot"], st["url"]
    assert _post(f"{url}/_edge/iot", {"detachPropagationSeconds": 1.5}) == (
        200,
        {"detachPropagationSeconds": 1.5, "exclusiveAttachments": len(st["state"].exclusive)},
    )
    thing = _thing(iot)
    cert, arn = _cert(iot)
    iot.attach_thing_principal(thingName=thing, principal=arn, thingPrincipalType=EXCLUSIVE)
    iot.detach_thing_principal(thingName=thing, principal=arn)
    detached = time.monotonic()
    status, code, message = _error(iot.delete_thing, thingName=thing)
    assert (status, code) == (400, "InvalidRequestException")
    assert message == f"Cannot delete. Thing {thing} is still attached to one or more principals"
    status, code, message = _error(iot.delete_certificate, certificateId=cert)
    assert (status, code) == (409, "DeleteConflictException") and arn in message
    assert time.monotonic() - detached < 1.5, "the machine is too slow for this test's window"
    time.sleep(max(0.0, detached + 1.6 - time.monotonic()))
    iot.delete_certificate(certificateId=cert)
    iot.delete_thing(thingName=thing)
    assert _error(iot.describe_thing, thingName=thing)[1] == "ResourceNotFoundException"


def test_no_delay_when_off_and_reset_restores_the_startup_delay(st):
    iot, url, state = st["iot"], st["url"], st["state"]
    thing = _thing(iot)
    cert, arn = _cert(iot)
    iot.attach_thing_principal(thingName=thing, principal=arn)
    iot.detach_thing_principal(thingName=thing, principal=arn)
    iot.delete_certificate(certificateId=cert)
    iot.delete_thing(thingName=thing)
    # The fixture's state started with the default delay; reset goes back to it.
    state.set_iot({"detachPropagationSeconds": 30})
    state.record_detach("x", "arn:aws:iot:us-east-1:123456789012:cert/c1")
    status, config = _post(f"{url}/_edge/reset", {"iot": True})
    assert status == 200 and config["iot"]["detachPropagationSeconds"] == edge.DEFAULT_DETACH_PROPAGATION_S
    assert not state.thing_detaching("x") and state.certificate_detaching("c1") is None


def test_detach_windows_on_a_fake_clock():
    clock = [100.0]
    state = edge.EdgeState(quotas=edge.QuotaConfig(enabled=False), clock=lambda: clock[0], detach_propagation_s=2.0)
    principal = "arn:aws:iot:us-east-1:123456789012:cert/" + "ab" * 32
    state.record_attach("t", principal, EXCLUSIVE)
    state.record_detach("t", principal)
    assert state.exclusive_thing(principal) is None
    assert state.thing_detaching("t") and state.certificate_detaching("ab" * 32) == principal
    assert not state.thing_detaching("other") and state.certificate_detaching("cd" * 32) is None
    clock[0] += 1.99
    assert state.thing_detaching("t")
    clock[0] += 0.01
    assert not state.thing_detaching("t") and state.certificate_detaching("ab" * 32) is None
    state.set_iot({"detachPropagationSeconds": 0})
    state.record_detach("t", principal)
    assert not state.thing_detaching("t")
    state.reset(iot=False)
    assert state.iot_settings()["detachPropagationSeconds"] == 0
    state.reset()
    assert state.iot_settings()["detachPropagationSeconds"] == 2.0


@pytest.mark.parametrize(
    "body",
    [{}, {"detachPropagationSeconds": -1}, {"detachPropagationSeconds": "soon"}, {"detachPropagationSeconds": True}, {"delay": 1}, []],
)
def test_bad_iot_settings_are_refused(st, body):
    status, out = _post(f"{st['url']}/_edge/iot", body)
    assert status == 400 and "detachPropagationSeconds" in out["message"]


def test_detach_delay_from_the_command_line():
    def args(*extra):
        return ["--port", "1", "--moto-url", "http://127.0.0.1:2", *extra]

    import argparse

    parsed = argparse.Namespace(
        template=str(edge.DEFAULT_TEMPLATE), quotas=None, quota_scale=None, no_quotas=False, faults=None, seed=None,
        detach_propagation_seconds=2.5,
    )
    assert edge.build_state(parsed).iot_settings()["detachPropagationSeconds"] == 2.5
    parsed.detach_propagation_seconds = -1
    with pytest.raises(ValueError):
        edge.build_state(parsed)
    with pytest.raises(SystemExit):
        edge.main(args("--detach-propagation-seconds", "-1"))


# ------------------------------------------------------------------ quotas and stats


def test_the_new_rows_are_counted_and_throttled(st):
    iot, state = st["iot"], st["state"]
    thing = _thing(iot)
    _, arn = _cert(iot)
    iot.attach_thing_principal(thingName=thing, principal=arn)
    state.set_quotas({"enabled": True, "rates": {"ListThingPrincipalsV2": 1, "ListPrincipalThingsV2": 1}})
    try:
        iot.list_thing_principals_v2(thingName=thing)
        assert _error(iot.list_thing_principals_v2, thingName=thing)[:2] == (400, "ThrottlingException")
        iot.list_principal_things_v2(principal=arn)
        iot.list_targets_for_policy(policyName=_create_policy(iot))
        # The edge counts a call as passed once it has sent the answer: the client may read it first.
        deadline = time.monotonic() + 2
        while state.snapshot()["operations"].get("ListTargetsForPolicy", {}).get("passed") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        ops = state.snapshot()["operations"]
        assert ops["ListThingPrincipalsV2"]["throttledQuota"] == 1 and ops["ListThingPrincipalsV2"]["passed"] == 1
        assert ops["ListPrincipalThingsV2"]["passed"] == 1 and ops["ListTargetsForPolicy"]["passed"] == 1
    finally:
        state.set_quotas({"enabled": False})


def test_decommission_calls_are_counted_and_throttled(st):
    # Each call of `thingpress decommission` is recognised (so counted and paced at its template
    # quota), ListAttachedPolicies too: its target, an ARN, travels percent-encoded in the path.
    iot, state = st["iot"], st["state"]
    policy, group = _create_policy(iot), _name("group")
    iot.create_thing_group(thingGroupName=group)
    thing = _thing(iot)
    cert_id, arn = _cert(iot)
    iot.attach_thing_principal(thingName=thing, principal=arn)
    iot.attach_policy(policyName=policy, target=arn)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    assert iot.describe_thing(thingName=thing)["thingName"] == thing
    assert [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]] == [policy]
    assert [g["groupName"] for g in iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"]] == [group]
    iot.detach_policy(policyName=policy, target=arn)
    iot.remove_thing_from_thing_group(thingGroupName=group, thingName=thing)
    iot.detach_thing_principal(thingName=thing, principal=arn)
    iot.delete_certificate(certificateId=cert_id)
    iot.delete_thing(thingName=thing)
    ops = {
        "DescribeThing", "ListAttachedPolicies", "ListThingGroupsForThing", "DetachPolicy",
        "RemoveThingFromThingGroup", "DetachThingPrincipal", "DeleteCertificate", "DeleteThing",
    }
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        counted = state.snapshot()["operations"]
        if all(counted.get(op, {}).get("passed") == 1 for op in ops):
            break
        time.sleep(0.01)
    assert {op: counted.get(op, {}).get("passed") for op in ops} == dict.fromkeys(ops, 1)
    state.set_quotas({"enabled": True, "rates": {"ListAttachedPolicies": 1}})
    try:
        iot.list_attached_policies(target=arn)
        assert _error(iot.list_attached_policies, target=arn)[:2] == (400, "ThrottlingException")
    finally:
        state.set_quotas({"enabled": False})


def _create_policy(iot) -> str:
    name = _name("policy")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
    iot.create_policy(policyName=name, policyDocument=json.dumps(doc))
    return name
