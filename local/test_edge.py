"""Tests of the local edge: routing, Lambda error rewrite, token buckets, faults, stats, admin API.

Run: .venv/bin/python -m pytest local/test_edge.py -q   (no moto or cargo needed; < 10 s)
"""

from __future__ import annotations

import copy
import json
import random
import re
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edge  # noqa: E402


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


# ------------------------------------------------------------------ routing


def test_iot_table_matches_botocore_model():
    import botocore.session

    model = botocore.session.get_session().get_service_model("iot")
    for op, method, uri in edge.IOT_OPERATIONS:
        http = model.operation_model(op).http
        assert (http["method"], http["requestUri"]) == (method, uri), op


@pytest.mark.parametrize(
    "method,path,op",
    [
        ("POST", "/certificate/register-no-ca", "RegisterCertificateWithoutCA"),
        ("POST", "/things/dev-1", "CreateThing"),
        ("GET", "/things/dev-1", "DescribeThing"),
        ("PUT", "/things/dev%3A1/principals", "AttachThingPrincipal"),
        ("PUT", "/target-policies/my-policy", "AttachPolicy"),
        ("PUT", "/thing-groups/addThingToThingGroup", "AddThingToThingGroup"),
        ("POST", "/thing-groups/addThingToThingGroup", "CreateThingGroup"),
        ("GET", "/certificates/" + "ab" * 32, "DescribeCertificate"),
        ("GET", "/certificates/" + "ab" * 32 + "?x=1", "DescribeCertificate"),
        ("PUT", "/certificates/" + "ab" * 32 + "?newStatus=ACTIVE", "UpdateCertificate"),
        # thingpress decommission; ListAttachedPolicies' target is an ARN, its "/" sent as %2F.
        ("POST", "/attached-policies/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Acert%2F" + "ab" * 32, "ListAttachedPolicies"),
        ("POST", "/attached-policies/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Athinggroup%2Ffleet?recursive=false", "ListAttachedPolicies"),
        ("GET", "/things/dev-1/thing-groups", "ListThingGroupsForThing"),
        ("POST", "/target-policies/my-policy", "DetachPolicy"),
        ("PUT", "/thing-groups/removeThingFromThingGroup", "RemoveThingFromThingGroup"),
        ("DELETE", "/things/dev%3A1/principals", "DetachThingPrincipal"),
        ("DELETE", "/certificates/" + "ab" * 32 + "?forceDelete=false", "DeleteCertificate"),
        ("DELETE", "/things/dev-1", "DeleteThing"),
        ("GET", "/things/dev-1/principals/extra", None),
        ("DELETE", "/target-policies/p", None),
    ],
)
def test_iot_operation(method, path, op):
    assert edge.iot_operation(method, path) == op


@pytest.mark.parametrize(
    "path,name",
    [
        ("/2015-03-31/functions/split/invocations", "split"),
        ("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aregister/invocations", "register"),
        ("/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:decorate:live/invocations", "decorate"),
        ("/2015-03-31/functions/123456789012%3Asummarize/invocations", "summarize"),
        ("/2015-03-31/functions/split:$LATEST/invocations", "split"),
        ("/2015-03-31/functions/split/invocations?Qualifier=1", "split"),
        ("/2015-03-31/functions/split", None),
        ("/things/split", None),
    ],
)
def test_lambda_function_name(path, name):
    assert edge.lambda_function_name(path) == name


def test_signing_service_from_authorization_and_presigned_url():
    auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=x"
    assert edge.signing_service({"Authorization": auth}, "/things/x") == "iot"
    presigned = "/bucket/key?X-Amz-Credential=test%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=1"
    assert edge.signing_service({}, presigned) == "s3"
    assert edge.signing_service({}, "/bucket/key") is None


# ------------------------------------------------------------------ Lambda answers


def test_lambda_500_becomes_unhandled_function_error():
    body = json.dumps({"errorType": "Thingpress.Throttled", "errorMessage": "chunk 3: 12 entries left"}).encode()
    status, headers, out = edge.lambda_error_answer(500, body)
    assert status == 200
    assert headers["X-Amz-Function-Error"] == "Unhandled"
    assert json.loads(out) == {"errorType": "Thingpress.Throttled", "errorMessage": "chunk 3: 12 entries left"}


def test_lambda_500_without_json_keeps_the_text():
    status, headers, out = edge.lambda_error_answer(500, b"boom")
    assert (status, headers["X-Amz-Function-Error"]) == (200, "Unhandled")
    assert json.loads(out) == {"errorType": "Runtime.Unknown", "errorMessage": "boom"}


def test_lambda_success_and_missing_function():
    assert edge.lambda_error_answer(200, b'{"ok":1}')[::2] == (200, b'{"ok":1}')
    assert "X-Amz-Function-Error" not in edge.lambda_error_answer(200, b"{}")[1]
    status, headers, _ = edge.lambda_error_answer(404, b"no such binary")
    assert (status, headers["x-amzn-ErrorType"]) == (404, "ResourceNotFoundException")


# ------------------------------------------------------------------ token buckets


def test_token_bucket_never_passes_more_than_the_quota():
    clock = FakeClock()
    bucket = edge.TokenBucket(rate=8, burst=8, clock=clock)
    assert sum(bucket.try_take() for _ in range(50)) == 8  # the burst
    # 64 attempts per second for 10 s (binary-exact steps): exactly rate × T pass.
    times = []
    for _ in range(640):
        clock.advance(1 / 64)
        if bucket.try_take():
            times.append(clock())
    assert len(times) == 80
    # No one-second window holds more than the rate (the burst was spent at the start).
    assert max(sum(1 for t in times if s <= t < s + 1) for s in times) <= 8
    # Idle refills only up to the burst.
    clock.advance(60)
    assert sum(bucket.try_take() for _ in range(50)) == 8


def test_token_bucket_fractional_rate():
    clock = FakeClock()
    bucket = edge.TokenBucket(rate=0.5, burst=1, clock=clock)
    assert bucket.try_take() and not bucket.try_take()
    clock.advance(1.0)
    assert not bucket.try_take()
    clock.advance(1.0)
    assert bucket.try_take()


def _state(**kw) -> tuple[edge.EdgeState, FakeClock]:
    clock = FakeClock()
    return edge.EdgeState(clock=clock, wall=clock, rng=random.Random(7), **kw), clock


def test_iot_quotas_default_scaled_and_off():
    state, clock = _state()
    got = [state.decide_iot("RegisterCertificateWithoutCA").action for _ in range(15)]
    assert got.count("forward") == 10 and got.count("respond") == 5
    assert state.stats["RegisterCertificateWithoutCA"]["throttledQuota"] == 5
    throttle = state.decide_iot("RegisterCertificateWithoutCA")
    assert (throttle.status, throttle.headers["x-amzn-ErrorType"]) == (400, "ThrottlingException")
    assert json.loads(throttle.body)["message"] == "Rate exceeded"
    # Unlimited operations always pass.
    assert all(state.decide_iot("DescribeThingType").action == "forward" for _ in range(1000))

    state.set_quotas({"scale": 20})
    got = [state.decide_iot("RegisterCertificateWithoutCA").action for _ in range(300)]
    assert got.count("forward") == 200
    clock.advance(0.5)
    assert sum(state.decide_iot("RegisterCertificateWithoutCA").action == "forward" for _ in range(300)) == 100

    state.set_quotas({"enabled": False})
    assert all(state.decide_iot("RegisterCertificateWithoutCA").action == "forward" for _ in range(1000))
    state.set_quotas({"defaults": True, "rates": {"CreateThing": 2}})
    assert [state.decide_iot("CreateThing").action for _ in range(3)] == ["forward", "forward", "respond"]


def test_edge_throttles_every_quota_the_template_declares():
    declared = {
        name.removeprefix("Quota"): float(default)
        for name, default in edge.template.parameter_defaults(edge.DEFAULT_TEMPLATE).items()
        if name.startswith("Quota") and name != "QuotaReserve"
    }
    # The two the edge once missed, and the rest of the importer's catalogue.
    assert {"ListPrincipalThings", "UpdateThing", "RegisterCertificateWithoutCA", "AttachPolicy"} <= set(declared)
    # The template's rates, and the edge's own for operations the template has no parameter for
    # (none of them also declared there: a stale duplicate would hide behind the template's).
    assert edge.default_iot_quotas() == {**edge.EDGE_IOT_QUOTAS, **declared}
    assert not set(edge.EDGE_IOT_QUOTAS) & set(declared)
    assert not set(edge.EDGE_IOT_QUOTA_CODES) & set(edge.template.quota_codes(edge.DEFAULT_TEMPLATE))
    for op, rate in edge.default_iot_quotas().items():
        state, _ = _state()
        got = [state.decide_iot(op).action for _ in range(int(rate) + 5)]
        # A full bucket holds one second of the rate; past it, AWS's ThrottlingException.
        assert got.count("forward") == int(rate), op
        assert state.stats[op]["throttledQuota"] == 5, op


def test_activate_and_decommission_calls_are_routed_and_rated():
    # What `thingpress activate` / `decommission` call: each a row of the table (so matched,
    # counted and throttled), with a rate from the template or the edge's AWS defaults.
    decommission = {
        "DescribeThing", "ListAttachedPolicies", "ListThingGroupsForThing", "DetachPolicy",
        "RemoveThingFromThingGroup", "DetachThingPrincipal", "UpdateCertificate", "DeleteCertificate",
        "DeleteThing",
    }
    ops = decommission | {
        "UpdateThing", "AttachThingPrincipal", "ListThingPrincipals", "ListThingPrincipalsV2",
        "ListPrincipalThingsV2", "ListTargetsForPolicy",
    }
    assert ops <= {op for op, _, _ in edge.IOT_OPERATIONS}
    assert ops <= set(edge.default_iot_quotas())
    # Decommission's calls are the importer's catalogue's: the template rates them, with codes.
    assert decommission <= set(edge.template.quota_rate_defaults(edge.DEFAULT_TEMPLATE))
    assert decommission <= set(edge.iot_quota_codes().values())
    assert edge.iot_operation("GET", "/things/dev-1/principals-v2?thingPrincipalType=EXCLUSIVE_THING") == "ListThingPrincipalsV2"
    assert edge.iot_operation("GET", "/principals/things-v2") == "ListPrincipalThingsV2"
    assert edge.iot_operation("POST", "/policy-targets/thingpress-device") == "ListTargetsForPolicy"
    assert edge.iot_operation("GET", "/things/dev-1/principals") == "ListThingPrincipals"


def test_quotas_come_from_the_given_template(tmp_path):
    text = edge.DEFAULT_TEMPLATE.read_text()
    scaled = tmp_path / "template.yaml"
    scaled.write_text(text.replace("  QuotaUpdateThing:\n    Type: Number\n    Default: 100", "  QuotaUpdateThing:\n    Type: Number\n    Default: 3"))
    stray = tmp_path / "stray.yaml"
    stray.write_text(text.replace("Parameters:\n", "Parameters:\n  QuotaNoSuchCall:\n    Type: Number\n    Default: 1\n", 1))
    try:
        edge.use_template(scaled)
        assert edge.QuotaConfig().rates["UpdateThing"] == 3
        with pytest.raises(ValueError, match="NoSuchCall"):
            edge.use_template(stray)
    finally:
        edge.use_template(edge.DEFAULT_TEMPLATE)
    assert edge.QuotaConfig().rates["UpdateThing"] == 100


def test_quota_config_rejects_nonsense():
    with pytest.raises(ValueError, match="scale"):
        edge.QuotaConfig().merged({"scale": 0})
    with pytest.raises(ValueError, match="unknown quota fields"):
        edge.QuotaConfig().merged({"rate": {}})


# ------------------------------------------------------------------ faults


def test_iot_fault_probabilities_zero_and_one():
    state, _ = _state(quotas=edge.QuotaConfig(enabled=False))
    state.set_faults({"iot": {"CreateThing": {"throttle": 0, "error": 0}}})
    assert all(state.decide_iot("CreateThing").action == "forward" for _ in range(500))
    state.set_faults({"iot": {"CreateThing": {"throttle": 1}}})
    decisions = [state.decide_iot("CreateThing") for _ in range(50)]
    assert all(d.status == 400 and d.headers["x-amzn-ErrorType"] == "ThrottlingException" for d in decisions)
    assert state.stats["CreateThing"]["throttledInjected"] == 50
    state.set_faults({"iot": {"*": {"error": 1, "errorStatus": 500, "latencyMs": 25}}})
    d = state.decide_iot("AttachPolicy")
    assert (d.status, d.headers["x-amzn-ErrorType"], d.latency_s) == (500, "InternalFailureException", 0.025)
    state.set_faults({})
    assert state.decide_iot("AttachPolicy").action == "forward"


def test_iot_fault_probability_half_is_roughly_half():
    state, _ = _state(quotas=edge.QuotaConfig(enabled=False))
    state.set_faults({"iot": {"CreateThing": {"error": 0.5}}})
    n = sum(state.decide_iot("CreateThing").action == "respond" for _ in range(2000))
    assert 850 < n < 1150


def test_lambda_faults():
    state, _ = _state()
    assert state.decide_lambda("register").action == "forward"
    state.set_faults({"lambda": {"register": {"crash": 1}}})
    d = state.decide_lambda("register")
    assert (d.status, d.headers["X-Amz-Function-Error"]) == (200, "Unhandled")
    assert json.loads(d.body)["errorType"] == "Runtime.ExitError"
    assert state.decide_lambda("split").action == "forward"
    state.set_faults({"lambda": {"*": {"timeout": 1, "timeoutMs": 1500}}})
    d = state.decide_lambda("split")
    assert d.then_timeout and d.timeout_s == 1.5 and json.loads(d.body)["errorType"] == "Sandbox.Timedout"
    state.set_faults({"lambda": {"split": {"throttle": 1}}})
    d = state.decide_lambda("split")
    assert (d.status, d.headers["x-amzn-ErrorType"]) == (429, "TooManyRequestsException")
    counters = state.stats
    assert counters["Lambda.Invoke:register"]["lambdaCrashes"] == 1
    assert counters["Lambda.Invoke:split"]["lambdaTimeouts"] == 1
    assert counters["Lambda.Invoke:split"]["lambdaThrottles"] == 1


@pytest.mark.parametrize(
    "faults",
    [
        {"iot": {"CreateThing": {"throttle": 1.5}}},
        {"iot": {"CreateThing": {"trottle": 0.1}}},
        {"lambda": {"split": {"crash": -1}}},
        {"s3": {}},
        {"iot": {"CreateThing": {"errorStatus": 404}}},
    ],
)
def test_bad_fault_configs_are_rejected(faults):
    state, _ = _state()
    with pytest.raises(ValueError):
        state.set_faults(faults)


# ------------------------------------------------------------------ stats


def test_stats_first_last_and_rate():
    state, clock = _state()
    for i in range(11):
        state.record_call("CreateThing")
        state.record_status("CreateThing", 200, passed=True)
        clock.advance(0.1)
    state.record_call("CreateThing")
    state.record_status("CreateThing", 400, passed=False)
    s = state.snapshot()["operations"]["CreateThing"]
    assert (s["calls"], s["passed"], s["statusCodes"]) == (12, 11, {"200": 11, "400": 1})
    assert s["firstCall"] == 1000.0 and s["lastCall"] == pytest.approx(1001.1)
    assert s["passedPerSecond"] == pytest.approx(10.0)
    state.enter("Lambda.Invoke:register")
    state.enter("Lambda.Invoke:register")
    state.leave("Lambda.Invoke:register")
    s = state.snapshot()["operations"]["Lambda.Invoke:register"]
    assert (s["inFlight"], s["maxInFlight"]) == (1, 2)
    state.reset()
    assert state.snapshot()["operations"] == {}


# ------------------------------------------------------------------ over HTTP


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in for moto and cargo lambda watch that records what it receives. Requests to
    "slow" things (a DynamoDB target, an S3 path under /slow/, the function "slow") take 0.1 s,
    and the most of them in flight at once is kept per kind."""

    protocol_version = "HTTP/1.1"
    seen: list = []
    lock = threading.Lock()
    in_flight: dict = {}
    max_in_flight: dict = {}

    def log_message(self, *args):
        pass

    def do_HEAD(self):  # noqa: N802
        self.seen.append((self.command, self.path, b""))
        self.send_response(200)
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.send_header("x-amz-version-id", "v1")
        self.send_header("Content-Length", "1234")
        self.end_headers()

    def _slow(self) -> str | None:
        if (self.headers.get("X-Amz-Target") or "").startswith("DynamoDB_20120810."):
            return "dynamodb"
        if self.path.startswith("/slow/"):
            return "s3"
        if self.path.startswith("/2015-03-31/functions/slow/"):
            return "lambda"
        return None

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, body))
        kind = self._slow()
        if kind is not None:
            with self.lock:
                self.in_flight[kind] = self.in_flight.get(kind, 0) + 1
                self.max_in_flight[kind] = max(self.max_in_flight.get(kind, 0), self.in_flight[kind])
            time.sleep(0.1)
            with self.lock:
                self.in_flight[kind] -= 1
        if "denied" in self.path:
            out, status = b"<Error><Code>AccessDenied</Code></Error>", 403
        elif self.path.startswith("/2015-03-31/functions/failing/"):
            out, status = json.dumps({"errorType": "Thingpress.InvalidInput", "errorMessage": "bad"}).encode(), 500
        elif self.path.startswith("/2015-03-31/functions/"):
            out, status = json.dumps({"echo": json.loads(body)}).encode(), 200
        else:
            out, status = b"{}", 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_PUT = do_GET = do_POST


@pytest.fixture()
def stack():
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    _Recorder.in_flight, _Recorder.max_in_flight = {}, {}
    url = f"http://127.0.0.1:{backend.server_address[1]}"
    state = edge.EdgeState(rng=random.Random(1))
    server = edge.EdgeServer(("127.0.0.1", 0), state, url, url)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True) for s in (backend, server)]
    for t in threads:
        t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    backend.shutdown()
    server.server_close()
    backend.server_close()


def _post(url, obj=None, headers=None):
    req = urllib.request.Request(url, data=json.dumps(obj or {}).encode(), method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_http_invoke_by_arn_and_error_rewrite(stack):
    url, state = stack
    arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Asplit"
    status, headers, body = _post(f"{url}/2015-03-31/functions/{arn}/invocations", {"a": 1})
    assert status == 200 and json.loads(body) == {"echo": {"a": 1}}
    assert _Recorder.seen[-1][1] == "/2015-03-31/functions/split/invocations"
    status, headers, body = _post(f"{url}/2015-03-31/functions/failing/invocations", {})
    assert status == 200 and headers["X-Amz-Function-Error"] == "Unhandled"
    assert json.loads(body)["errorType"] == "Thingpress.InvalidInput"
    ops = json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["operations"]
    assert ops["Lambda.Invoke:split"]["passed"] == 1
    assert ops["Lambda.Invoke:failing"]["functionErrors"] == 1


def test_http_iot_throttle_is_what_boto3_calls_throttling(stack):
    import boto3
    from botocore.config import Config

    url, state = stack
    _post(f"{url}/_edge/quotas", {"rates": {"CreateThing": 1}})
    iot = boto3.client(
        "iot",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(retries={"total_max_attempts": 1}),
    )
    iot.create_thing(thingName="one")
    assert _Recorder.seen[-1][:2] == ("POST", "/things/one")
    with pytest.raises(iot.exceptions.ThrottlingException):
        iot.create_thing(thingName="two")
    assert len(_Recorder.seen) == 1  # the throttled call never reached the backend
    _post(f"{url}/_edge/faults", {"iot": {"AttachPolicy": {"error": 1}}})
    with pytest.raises(iot.exceptions.ServiceUnavailableException):
        iot.attach_policy(policyName="p", target="arn:aws:iot:us-east-1:123456789012:cert/x")
    stats = json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["operations"]
    assert stats["CreateThing"]["throttledQuota"] == 1 and stats["CreateThing"]["passed"] == 1
    assert stats["AttachPolicy"]["faults5xx"] == 1
    status, _, body = _post(f"{url}/_edge/faults", {"iot": {"X": {"throttle": 2}}})
    assert status == 400 and b"0..1" in body
    _post(f"{url}/_edge/reset")
    cfg = json.load(urllib.request.urlopen(f"{url}/_edge/config"))
    assert cfg["faults"] == {} and cfg["quotas"]["rates"]["CreateThing"] == 100
    assert json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["operations"] == {}


# ------------------------------------------------------------------ S3 → EventBridge trigger

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:thingpress-import"


@pytest.mark.parametrize(
    "method,path,headers,expected",
    [
        ("PUT", "/b/incoming/p/reel%201.pem?x-id=PutObject", {}, ("b", "incoming/p/reel 1.pem", "PutObject")),
        ("PUT", "/b/incoming/p/x.pem", {}, ("b", "incoming/p/x.pem", "PutObject")),
        ("PUT", "/b/incoming/p/x.pem", {"x-amz-copy-source": "/b/y"}, ("b", "incoming/p/x.pem", "CopyObject")),
        ("POST", "/b/k?uploadId=abc", {}, ("b", "k", "CompleteMultipartUpload")),
        ("POST", "/b/k?uploadId=abc&x-id=CompleteMultipartUpload", {}, ("b", "k", "CompleteMultipartUpload")),
        ("POST", "/b/k?uploads", {}, None),  # CreateMultipartUpload
        ("PUT", "/b/k?partNumber=1&uploadId=abc", {}, None),  # UploadPart
        ("PUT", "/b/k?tagging", {}, None),
        ("PUT", "/b", {}, None),  # CreateBucket
        ("GET", "/b/k", {}, None),
        ("DELETE", "/b/k", {}, None),
    ],
)
def test_s3_object_created(method, path, headers, expected):
    assert edge.s3_object_created(method, path, headers) == expected


def test_trigger_rules_match_bucket_and_prefix_and_reject_nonsense():
    state = edge.EdgeState()
    assert state.set_triggers({"rules": [{"bucket": "b", "prefix": "incoming/", "stateMachineArn": ARN}]})
    assert [r.state_machine_arn for r in state.triggers_for("b", "incoming/p/x")] == [ARN]
    assert state.triggers_for("b", "other/p/x") == [] and state.triggers_for("c", "incoming/p/x") == []
    state.reset()  # test faults and quotas only; the trigger is deployment config
    assert state.config()["triggers"] == [{"bucket": "b", "prefix": "incoming/", "stateMachineArn": ARN}]
    for bad in ({}, {"rules": {}}, {"rules": [{"bucket": "b"}]}, {"rules": [{"bucket": "", "stateMachineArn": ARN}]},
                {"rules": [{"bucket": "b", "stateMachineArn": ARN, "x": 1}]}, {"rules": [], "x": 1}):
        with pytest.raises(ValueError):
            state.set_triggers(bad)
    state.set_triggers({"rules": []})
    assert state.triggers_for("b", "incoming/p/x") == []


def test_object_created_event_has_the_shape_s3_sends_to_eventbridge():
    meta = {"size": "42", "etag": "abc", "version-id": "v7"}
    event = edge.object_created_event("b", "incoming/p/x.pem", "PutObject", meta, "eu-west-1", "111122223333", 0.0)
    assert {k: event[k] for k in ("version", "detail-type", "source", "account", "region", "resources", "time")} == {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "111122223333",
        "region": "eu-west-1",
        "resources": ["arn:aws:s3:::b"],
        "time": "1970-01-01T00:00:00Z",
    }
    detail = event["detail"]
    assert detail["bucket"] == {"name": "b"} and detail["reason"] == "PutObject"
    assert {k: detail["object"][k] for k in ("key", "size", "etag", "version-id")} == {
        "key": "incoming/p/x.pem",
        "size": 42,
        "etag": "abc",
        "version-id": "v7",
    }
    unversioned = edge.object_created_event("b", "k", "PutObject", {"size": 1, "etag": "e"}, "r", "a", 0.0)
    assert "version-id" not in unversioned["detail"]["object"]
    path, headers, body = edge.start_execution_request(edge.TriggerRule("b", "incoming/", ARN), event)
    call = json.loads(body)
    assert path == "/" and headers["X-Amz-Target"] == "AWSStepFunctions.StartExecution"
    assert "/us-east-1/states/aws4_request" in headers["Authorization"]
    assert call["stateMachineArn"] == ARN and json.loads(call["input"]) == event
    assert len(call["name"]) == 36 and all(c.isalnum() or c == "-" for c in call["name"])


def _wait_for(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _s3_put(url, path):
    auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
    req = urllib.request.Request(f"{url}{path}", data=b"hello", method="PUT", headers={"Authorization": auth})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_http_upload_under_incoming_starts_the_state_machine(stack):
    url, state = stack
    assert _post(f"{url}/_edge/triggers", {"rules": [{"bucket": "b", "prefix": "incoming/", "stateMachineArn": ARN}]})[0] == 200

    def starts():
        return [json.loads(body) for method, path, body in _Recorder.seen if method == "POST" and path == "/"]

    assert _s3_put(url, "/b/incoming/p/reel.pem?x-id=PutObject") == 200
    assert _wait_for(lambda: len(starts()) == 1), _Recorder.seen
    call = starts()[0]
    event = json.loads(call["input"])
    assert call["stateMachineArn"] == ARN
    assert event["detail"]["object"] == {
        "key": "incoming/p/reel.pem",
        "size": 1234,
        "etag": "0123456789abcdef0123456789abcdef",
        "version-id": "v1",
        "sequencer": event["detail"]["object"]["sequencer"],
    }
    assert ("HEAD", "/b/incoming/p/reel.pem", b"") in _Recorder.seen
    # Other prefixes and buckets, other operations and refused uploads start nothing.
    assert _s3_put(url, "/b/other/reel.pem") == 200
    assert _s3_put(url, "/c/incoming/p/reel.pem") == 200
    assert _s3_put(url, "/b/incoming/p/reel.pem?tagging") == 200
    assert _s3_put(url, "/b/incoming/p/denied.pem") == 403
    assert not _wait_for(lambda: len(starts()) > 1, timeout=0.5)
    stats = json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["operations"][edge.TRIGGER_STATS_KEY]
    assert stats["calls"] == 1 and stats["passed"] == 1
    cfg = json.load(urllib.request.urlopen(f"{url}/_edge/config"))
    assert cfg["triggers"] == [{"bucket": "b", "prefix": "incoming/", "stateMachineArn": ARN}]
    status, _, body = _post(f"{url}/_edge/triggers", {"rules": [{"bucket": "b"}]})
    assert status == 400 and b"stateMachineArn" in body


# ------------------------------------------------------------------ IAM (local/iam.py)

ACCOUNT = "123456789012"
IOT_ARN = f"arn:aws:iot:us-east-1:{ACCOUNT}"
SPLIT_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:tp-split"
PRINCIPALS = {
    "principals": {
        "RegisterFunction": {
            "name": "RegisterFunction",
            "statements": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::b/runs/*"},
                {"Effect": "Allow", "Action": "iot:AttachPolicy", "Resource": f"{IOT_ARN}:policy/*"},
                {"Effect": "Allow", "Action": "iot:CreateThing", "Resource": f"{IOT_ARN}:thing/*"},
            ],
        },
        "ImportStateMachine": {
            "name": "ImportStateMachine",
            "statements": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": SPLIT_ARN}],
        },
        "ImportTriggerRule": {"name": "ImportTriggerRule", "statements": [{"Effect": "Allow", "Action": "states:StartExecution", "Resource": "arn:aws:states:us-east-1:123456789012:stateMachine:other"}]},
    }
}


def _client(url, service, key):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def test_http_iam_admin_route(stack):
    url, state = stack
    status, _, body = _post(f"{url}/_edge/iam", PRINCIPALS)
    assert status == 200
    got = json.loads(body)["principals"]
    assert got["RegisterFunction"] == {
        "name": "RegisterFunction",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/RegisterFunction/RegisterFunction",
        "statements": 3,
    }
    assert json.load(urllib.request.urlopen(f"{url}/_edge/iam"))["principals"].keys() == got.keys()
    status, _, body = _post(f"{url}/_edge/iam", {"principals": {"X": {"statements": [{"Effect": "Allow"}]}}})
    assert status == 400 and b"Action" in body
    assert json.load(urllib.request.urlopen(f"{url}/_edge/iam"))["principals"].keys() == got.keys()  # unchanged
    # reset clears counters, not the deployment's principals
    _post(f"{url}/_edge/reset")
    assert json.load(urllib.request.urlopen(f"{url}/_edge/iam"))["principals"].keys() == got.keys()


def test_http_function_key_is_refused_what_its_role_does_not_allow(stack):
    from botocore.exceptions import ClientError

    url, state = stack
    _post(f"{url}/_edge/iam", PRINCIPALS)
    s3 = _client(url, "s3", "RegisterFunction")
    auth = "AWS4-HMAC-SHA256 Credential=RegisterFunction/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
    req = urllib.request.Request(f"{url}/b/runs/r/x?x-id=PutObject", data=b"1", method="PUT", headers={"Authorization": auth})
    assert urllib.request.urlopen(req, timeout=5).status == 200  # allowed: reaches the backend
    assert _Recorder.seen[-1][:2] == ("PUT", "/b/runs/r/x?x-id=PutObject")
    seen = len(_Recorder.seen)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="b", Key="runs/r/manifest/x.pem", VersionId="v1")
    err = e.value.response
    assert err["Error"]["Code"] == "AccessDenied" and err["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err["Error"]["Message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/RegisterFunction/RegisterFunction is not authorized to perform: "
        's3:GetObjectVersion on resource: "arn:aws:s3:::b/runs/r/manifest/x.pem" because no identity-based policy '
        "allows the s3:GetObjectVersion action"
    )
    iot = _client(url, "iot", "RegisterFunction")
    # AttachPolicy on policy/* scopes nothing: the action's resource is the target certificate.
    with pytest.raises(ClientError) as e:
        iot.attach_policy(policyName="p", target=f"{IOT_ARN}:cert/abc")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert f"iot:AttachPolicy on resource: {IOT_ARN}:cert/abc" in e.value.response["Error"]["Message"]
    assert len(_Recorder.seen) == seen  # refused calls never reach moto
    iot.create_thing(thingName="dev-1")
    sfn = _client(url, "stepfunctions", "RegisterFunction")
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn="arn:aws:states:us-east-1:123456789012:stateMachine:tp-import", input="{}")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    # unknown keys stay unrestricted
    _client(url, "s3", "test").get_object(Bucket="b", Key="runs/r/manifest/x.pem", VersionId="v1")
    stats = json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["iam"]
    assert stats["denied"] == 3 and stats["byPrincipal"] == {"RegisterFunction": 3}
    assert [d["action"] for d in stats["recent"]] == ["s3:GetObjectVersion", "iot:AttachPolicy", "states:StartExecution"]
    _post(f"{url}/_edge/reset")
    assert json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["iam"]["denied"] == 0


def test_http_moto_state_machine_key_is_the_state_machine_role(stack):
    from botocore.exceptions import ClientError

    url, state = stack
    _post(f"{url}/_edge/iam", PRINCIPALS)
    lam = _client(url, "lambda", edge.MOTO_SFN_ACCESS_KEY)
    assert json.load(lam.invoke(FunctionName=SPLIT_ARN, Payload=b'{"a": 1}')["Payload"]) == {"echo": {"a": 1}}
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=SPLIT_ARN.replace("split", "register"), Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "assumed-role/ImportStateMachine/ImportStateMachine" in e.value.response["Error"]["Message"]


def test_http_unmappable_call_of_a_restricted_principal_is_refused(stack):
    url, state = stack
    _post(f"{url}/_edge/iam", PRINCIPALS)
    auth = "AWS4-HMAC-SHA256 Credential=RegisterFunction/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"
    status, headers, body = _post(f"{url}/", {}, {"Authorization": auth})
    assert status == 403 and headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert b"cannot authorize" in body and b"sqs" in body


def test_http_trigger_runs_as_the_rule_role(stack):
    url, state = stack
    _post(f"{url}/_edge/iam", PRINCIPALS)  # the rule's role may start another state machine only
    _post(f"{url}/_edge/triggers", {"rules": [{"bucket": "b", "prefix": "incoming/", "stateMachineArn": ARN}]})
    assert _s3_put(url, "/b/incoming/p/reel.pem") == 200
    assert _wait_for(lambda: json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["iam"]["denied"] == 1)
    assert not [p for m, p, _ in _Recorder.seen if m == "POST" and p == "/"]
    stats = json.load(urllib.request.urlopen(f"{url}/_edge/stats"))
    assert stats["iam"]["recent"][0]["action"] == "states:StartExecution"
    assert stats["operations"][edge.TRIGGER_STATS_KEY]["upstreamErrors"] == 1
    allowed = copy.deepcopy(PRINCIPALS)
    allowed["principals"]["ImportTriggerRule"]["statements"][0]["Resource"] = ARN
    _post(f"{url}/_edge/iam", allowed)
    assert _s3_put(url, "/b/incoming/p/reel2.pem") == 200
    assert _wait_for(lambda: [p for m, p, _ in _Recorder.seen if m == "POST" and p == "/"])


# ------------------------------------------------------------------ Service Quotas for iot

APIS_RS = Path(__file__).resolve().parent.parent / "crates" / "importer" / "src" / "apis.rs"
REGISTER_CODE = "L-4671C7C8"


def _catalogue_codes() -> dict[str, str]:
    """operation -> quota_code of every row of the importer's catalogue (apis.rs's macro rows)."""
    rows = re.findall(r"\n    (\w+) \{\s*env: \"\w+\",\s*quota: [\d.]+,\s*quota_code: \"([^\"]+)\"", APIS_RS.read_text())
    assert rows, "no catalogue rows found in apis.rs"
    return dict(rows)


def test_template_quota_codes_are_the_catalogues_and_every_rated_operation_has_one():
    codes = edge.template.quota_codes(edge.DEFAULT_TEMPLATE)
    assert codes == _catalogue_codes()
    assert set(codes) == set(edge.template.quota_rate_defaults(edge.DEFAULT_TEMPLATE))
    # With the edge's own (operations outside the catalogue), every rated operation but the V2
    # listings (no quota of their own found) has a code the edge answers Service Quotas for.
    no_code = {"ListThingPrincipalsV2", "ListPrincipalThingsV2"}
    assert set(edge.iot_quota_codes().values()) == set(edge.default_iot_quotas()) - no_code
    assert edge.iot_quota_codes()["L-889800F7"] == "DeleteThing"
    assert edge.iot_quota_codes()[REGISTER_CODE] == "RegisterCertificateWithoutCA"


def test_quota_codes_for_unrated_operations_or_malformed_are_refused(tmp_path):
    text = edge.DEFAULT_TEMPLATE.read_text()
    assert "    QuotaCodes:\n" in text
    stray = tmp_path / "stray.yaml"
    stray.write_text(text.replace("    QuotaCodes:\n", "    QuotaCodes:\n      DescribeEndpoint: L-00000000\n", 1))
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("    QuotaCodes:\n", "    QuotaCodes:\n      DescribeEndpoint: 7\n", 1))
    twice = tmp_path / "twice.yaml"
    twice.write_text(text.replace("    QuotaCodes:\n", f"    QuotaCodes:\n      DescribeEndpoint: {REGISTER_CODE}\n", 1))
    try:
        with pytest.raises(ValueError, match="without a Quota\\* parameter: \\['DescribeEndpoint'\\]"):
            edge.use_template(stray)
        with pytest.raises(ValueError, match="not a Service Quotas code"):
            edge.use_template(bad)
        with pytest.raises(ValueError, match="also another operation's code"):
            edge.use_template(twice)
    finally:
        edge.use_template(edge.DEFAULT_TEMPLATE)


def _sq(state, op, **params):
    target = f"ServiceQuotasV20190624.{op}"
    return state.service_quotas_answer(target, json.dumps(params).encode(), "us-east-1", "123456789012")


def test_service_quotas_for_iot_answer_the_edges_rates():
    state, _ = _state()
    status, headers, body = _sq(state, "GetServiceQuota", ServiceCode="iot", QuotaCode=REGISTER_CODE)
    assert status == 200 and headers["Content-Type"] == "application/x-amz-json-1.1"
    assert json.loads(body)["Quota"] == {
        "ServiceCode": "iot",
        "ServiceName": "AWS IoT",
        "QuotaArn": f"arn:aws:servicequotas:us-east-1:123456789012:iot/{REGISTER_CODE}",
        "QuotaCode": REGISTER_CODE,
        "QuotaName": "RegisterCertificateWithoutCA API TPS",
        "Value": 10.0,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
        "Period": {"PeriodValue": 1, "PeriodUnit": "SECOND"},
    }
    # Applied = what the edge enforces now; the AWS default stays the template's, unscaled.
    state.set_quotas({"scale": 1.5})
    assert json.loads(_sq(state, "GetServiceQuota", ServiceCode="iot", QuotaCode=REGISTER_CODE)[2])["Quota"]["Value"] == 15.0
    default = json.loads(_sq(state, "GetAWSDefaultServiceQuota", ServiceCode="iot", QuotaCode=REGISTER_CODE)[2])["Quota"]
    assert default["Value"] == 10.0 and default["QuotaArn"] == f"arn:aws:servicequotas:us-east-1::iot/{REGISTER_CODE}"
    state.set_quotas({"rates": {"RegisterCertificateWithoutCA": 4}})
    assert json.loads(_sq(state, "GetServiceQuota", ServiceCode="iot", QuotaCode=REGISTER_CODE)[2])["Quota"]["Value"] == 6.0
    listed = json.loads(_sq(state, "ListServiceQuotas", ServiceCode="iot")[2])["Quotas"]
    assert {q["QuotaCode"]: q["Value"] for q in listed} == {
        code: state.quotas.rates[op] * 1.5 for code, op in edge.iot_quota_codes().items()
    }
    listed = json.loads(_sq(state, "ListAWSDefaultServiceQuotas", ServiceCode="iot")[2])["Quotas"]
    assert {q["QuotaCode"]: q["Value"] for q in listed} == {
        code: edge.default_iot_quotas()[op] for code, op in edge.iot_quota_codes().items()
    }


def test_service_quotas_errors_and_what_goes_to_moto():
    state, _ = _state()
    status, headers, body = _sq(state, "GetServiceQuota", ServiceCode="iot", QuotaCode="L-00000000")
    assert (status, json.loads(body)["__type"]) == (400, "NoSuchResourceException")
    assert "L-00000000" in json.loads(body)["message"]
    status, _, body = _sq(state, "GetAWSDefaultServiceQuota", ServiceCode="iot")
    assert (status, json.loads(body)["__type"]) == (400, "IllegalArgumentException")
    # Other services, other operations and unreadable bodies are moto's to answer.
    assert _sq(state, "GetServiceQuota", ServiceCode="vpc", QuotaCode="L-7E9ECCDB") is None
    assert _sq(state, "ListServices") is None
    assert state.service_quotas_answer("ServiceQuotasV20190624.GetServiceQuota", b"{", "us-east-1", "1") is None
    assert state.service_quotas_answer("Other.GetServiceQuota", b'{"ServiceCode": "iot"}', "us-east-1", "1") is None


def test_http_service_quotas_as_boto3_reads_them(stack):
    url, state = stack
    sq = _client(url, "service-quotas", "test")
    quota = sq.get_service_quota(ServiceCode="iot", QuotaCode=REGISTER_CODE)["Quota"]
    assert quota["Value"] == 10.0 and quota["QuotaName"] == "RegisterCertificateWithoutCA API TPS"
    assert sq.get_aws_default_service_quota(ServiceCode="iot", QuotaCode="L-64CBACAC")["Quota"]["Value"] == 100.0
    assert len(sq.list_service_quotas(ServiceCode="iot")["Quotas"]) == len(edge.iot_quota_codes())
    with pytest.raises(sq.exceptions.NoSuchResourceException):
        sq.get_service_quota(ServiceCode="iot", QuotaCode="L-00000000")
    assert _Recorder.seen == []  # answered by the edge
    sq.get_service_quota(ServiceCode="vpc", QuotaCode="L-7E9ECCDB")
    assert [(m, p) for m, p, _ in _Recorder.seen] == [("POST", "/")]  # forwarded to moto
    ops = json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["operations"]
    assert ops["servicequotas:GetServiceQuota"]["calls"] == 3
    assert ops["servicequotas:GetServiceQuota"]["statusCodes"] == {"200": 2, "400": 1}


def test_http_service_quotas_go_through_iam(stack):
    from botocore.exceptions import ClientError

    url, state = stack
    grant = {"Effect": "Allow", "Action": "servicequotas:GetServiceQuota", "Resource": "arn:aws:servicequotas:*:*:iot/*"}
    _post(f"{url}/_edge/iam", {"principals": {"Operator": {"name": "Operator", "statements": [grant]}}})
    sq = _client(url, "service-quotas", "Operator")
    assert sq.get_service_quota(ServiceCode="iot", QuotaCode=REGISTER_CODE)["Quota"]["Value"] == 10.0
    with pytest.raises(ClientError) as e:
        sq.get_aws_default_service_quota(ServiceCode="iot", QuotaCode=REGISTER_CODE)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "servicequotas:GetAWSDefaultServiceQuota on resource: *" in e.value.response["Error"]["Message"]


# ------------------------------------------------------------------ DynamoDB


def test_http_dynamodb_requests_are_served_one_at_a_time(stack):
    url, state = stack
    ddb = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"
    s3 = ddb.replace("/dynamodb/", "/s3/")

    def call(path, headers):
        _post(f"{url}{path}", {"TableName": "t"}, headers)

    threads = [
        threading.Thread(target=call, args=("/", {"Authorization": ddb, "X-Amz-Target": "DynamoDB_20120810.UpdateItem"}))
        for _ in range(4)
    ] + [threading.Thread(target=call, args=(f"/slow/k{i}", {"Authorization": s3})) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert _Recorder.max_in_flight["dynamodb"] == 1
    assert _Recorder.max_in_flight["s3"] > 1  # other services stay concurrent
    ops = json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["operations"]
    assert ops["dynamodb:UpdateItem"]["passed"] == 4 and ops["dynamodb:UpdateItem"]["maxInFlight"] > 1  # they queued


# ------------------------------------------------------------------ the competing caller


def test_competitor_bodies_are_checked():
    ops = set(edge.default_iot_quotas())
    assert edge.parse_competitors({"RegisterCertificateWithoutCA": 0.3}, ops) == {"RegisterCertificateWithoutCA": 0.3}
    assert edge.parse_competitors({}, ops) == {}
    for body, message in (
        ({"DescribeEndpoint": 0.3}, "not an IoT operation with a rate quota"),
        ({"RegisterCertificateWithoutCA": 0}, "0 < share < 1"),
        ({"RegisterCertificateWithoutCA": 1}, "0 < share < 1"),
        ({"RegisterCertificateWithoutCA": "0.3"}, "0 < share < 1"),
        ({"RegisterCertificateWithoutCA": True}, "0 < share < 1"),
        ([], "must be"),
    ):
        with pytest.raises(ValueError, match=message):
            edge.parse_competitors(body, ops)


def test_competitor_takes_from_the_same_bucket():
    state, clock = _state()
    # The competitor takes 3 of the 10 tokens a full bucket holds: Thingpress gets 7.
    assert [state.competitor_take("RegisterCertificateWithoutCA") for _ in range(3)] == [True] * 3
    got = [state.decide_iot("RegisterCertificateWithoutCA").action for _ in range(10)]
    assert got.count("forward") == 7
    assert not state.competitor_take("RegisterCertificateWithoutCA")
    s = state.stats["RegisterCertificateWithoutCA"]
    assert (s["competitorCalls"], s["competitorThrottled"], s["throttledQuota"], s["calls"]) == (4, 1, 3, 0)
    assert state.competitor_interval("RegisterCertificateWithoutCA", 0.5) == pytest.approx(0.2)
    state.set_quotas({"scale": 2})
    assert state.competitor_interval("RegisterCertificateWithoutCA", 0.5) == pytest.approx(0.1)


def test_competitor_threads_run_at_their_share_and_stop():
    state = edge.EdgeState(quotas=edge.QuotaConfig(rates={"CreateThing": 100}))
    assert state.set_competitors({"CreateThing": 0.4}) == {"CreateThing": 0.4}  # 40 calls/s
    assert state.config()["competitors"] == {"CreateThing": 0.4}
    time.sleep(0.5)
    state.set_competitors({})
    n = state.snapshot()["operations"]["CreateThing"]["competitorCalls"]
    assert 12 <= n <= 22, n  # 20 expected; loose for a busy machine
    time.sleep(0.2)
    assert state.snapshot()["operations"]["CreateThing"]["competitorCalls"] == n  # stopped
    state.set_competitors({"CreateThing": 0.9})
    state.reset(stats=False, faults=False, quotas=False)  # reset stops it too
    n = state.snapshot()["operations"]["CreateThing"]["competitorCalls"]
    time.sleep(0.2)
    assert state.snapshot()["operations"]["CreateThing"]["competitorCalls"] == n
    assert state.config()["competitors"] == {}


def test_http_competitors_route(stack):
    url, state = stack
    status, _, body = _post(f"{url}/_edge/competitors", {"RegisterCertificateWithoutCA": 0.3})
    assert status == 200 and json.loads(body) == {"competitors": {"RegisterCertificateWithoutCA": 0.3}}
    assert _wait_for(lambda: json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["operations"].get("RegisterCertificateWithoutCA", {}).get("competitorCalls", 0) >= 2)
    status, _, body = _post(f"{url}/_edge/competitors", {"RegisterCertificateWithoutCA": 1.5})
    assert status == 400 and b"0 < share < 1" in body
    assert state.competitors == {"RegisterCertificateWithoutCA": 0.3}  # unchanged
    _post(f"{url}/_edge/reset", {"stats": False, "faults": False, "quotas": False, "competitors": False})
    assert state.competitors == {"RegisterCertificateWithoutCA": 0.3}  # kept when asked
    status, _, body = _post(f"{url}/_edge/reset", {"stat": True})
    assert status == 400 and b"reset takes" in body
    assert _post(f"{url}/_edge/reset")[0] == 200
    assert json.load(urllib.request.urlopen(f"{url}/_edge/config"))["competitors"] == {}


# ------------------------------------------------------------------ Lambda billed time


def test_http_lambda_invocations_and_duration_are_counted(stack):
    url, state = stack
    for _ in range(2):
        assert _post(f"{url}/2015-03-31/functions/slow/invocations", {"a": 1})[0] == 200
    _post(f"{url}/2015-03-31/functions/split/invocations", {})
    state.set_faults({"lambda": {"split": {"crash": 1}}})
    _post(f"{url}/2015-03-31/functions/split/invocations", {})  # injected: the function never ran
    ops = json.load(urllib.request.urlopen(f"{url}/_edge/stats"))["operations"]
    slow = ops["Lambda.Invoke:slow"]
    assert slow["invocations"] == 2 and 200.0 <= slow["durationMs"] < 2000.0
    split = ops["Lambda.Invoke:split"]
    assert (split["calls"], split["invocations"]) == (2, 1) and 0.0 < split["durationMs"] < slow["durationMs"]
