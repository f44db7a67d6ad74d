"""Tests of local/iam.py: request mapping, ARNs from the IAM definitions, policy evaluation, lint.

Run: .venv/bin/python -m pytest local/test_iam.py -q   (pure; no moto or network)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import iam  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"
IOT = f"arn:aws:iot:{REGION}:{ACCOUNT}"
SM = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:tp-import"


def signed(service: str, key: str = "SplitFunction", **extra: str) -> dict[str, str]:
    auth = f"AWS4-HMAC-SHA256 Credential={key}/20261130/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    return {"Authorization": auth, **extra}


def checks(method, path, service, body=b"", **headers):
    req = iam.request_from_http(method, path, signed(service, **headers), body)
    return [(c.action, list(c.resources)) for c in req.checks]


# ------------------------------------------------------------------ IAM definitions


def test_resource_types_come_from_the_iam_definitions():
    assert iam.action_resource_types("iot:AttachPolicy") == ("cert", "thinggroup")
    assert iam.action_resource_types("iot:AttachThingPrincipal") == ("cert",)
    assert iam.action_resource_types("iot:RegisterCertificateWithoutCA") == ()
    assert iam.action_resource_types("ioT:attachpolicy") == ("cert", "thinggroup")  # names are case-insensitive
    assert iam.action_resource_types("iot:NoSuchAction") is None
    assert iam.action_resource_types("nosuchservice:Get") is None


def test_arns_are_built_from_the_definitions_formats():
    assert iam.build_arn("iot", "cert", REGION, ACCOUNT, "abc") == f"{IOT}:cert/abc"
    assert iam.build_arn("s3", "object", REGION, ACCOUNT, "b", "runs/x") == "arn:aws:s3:::b/runs/x"
    assert iam.build_arn("s3", "bucket", REGION, ACCOUNT, "b") == "arn:aws:s3:::b"
    with pytest.raises(iam.UnmappedRequest):
        iam.build_arn("s3", "object", REGION, ACCOUNT, "only-bucket")


def test_classify_arn():
    assert "cert" in iam.classify_arn(f"{IOT}:cert/abc")
    assert "thinggroup" in iam.classify_arn(f"{IOT}:thinggroup/g")
    assert "maprun" in iam.classify_arn(f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:tp-import/Map:1")
    assert iam.classify_arn("not-an-arn") == []


# ------------------------------------------------------------------ wildcards


@pytest.mark.parametrize(
    "pattern,arn,expected",
    [
        ("*", "arn:aws:s3:::b/k", True),
        ("*", "*", True),
        ("arn:aws:s3:::b/*", "*", False),
        ("arn:aws:s3:::b/incoming/*", "arn:aws:s3:::b/incoming/p/x.pem", True),
        ("arn:aws:s3:::b/incoming/*", "arn:aws:s3:::b/runs/r/manifest/x.pem", False),
        ("arn:aws:s3:::b/runs/*/manifest/*", "arn:aws:s3:::b/runs/r/manifest/x.pem", True),
        ("arn:aws:s3:::b/runs/?/x", "arn:aws:s3:::b/runs/1/x", True),
        ("arn:aws:s3:::b/runs/?/x", "arn:aws:s3:::b/runs/12/x", False),
        ("arn:aws:s3:::B/*", "arn:aws:s3:::b/k", False),  # resources are case-sensitive
        ("arn:aws:iot:*:*:cert/*", f"{IOT}:cert/abc", True),
        ("arn:aws:iot:*:*:cert/*", f"{IOT}:thing/abc", False),
        # a wildcard never spans an ARN segment's colon
        ("arn:aws:states:*", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:sm:x", False),
        (f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import/*", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import/Map:x", True),
    ],
)
def test_arn_matches(pattern, arn, expected):
    assert iam.arn_matches(pattern, arn) is expected


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ("cert/*", "thing/*", False),
        ("cert/*", "c*", True),
        ("*/*", "bucket", False),
        ("a?c", "*b*", True),
        ("abc", "abd", False),
        ("*", "", True),
        ("x*y", "*z", False),
    ],
)
def test_globs_intersect(a, b, expected):
    assert iam.globs_intersect(a, b) is expected
    assert iam.globs_intersect(b, a) is expected


# ------------------------------------------------------------------ request mapping: S3


@pytest.mark.parametrize(
    "method,path,headers,expected",
    [
        ("GET", "/b/runs/r/manifest/x.pem?versionId=v1&x-id=GetObject", {}, [("s3:GetObjectVersion", ["arn:aws:s3:::b/runs/r/manifest/x.pem"])]),
        ("GET", "/b/incoming/p/a%20b.pem?x-id=GetObject", {}, [("s3:GetObject", ["arn:aws:s3:::b/incoming/p/a b.pem"])]),
        ("HEAD", "/b/claims/c", {}, [("s3:GetObject", ["arn:aws:s3:::b/claims/c"])]),
        ("HEAD", "/b/claims/c?versionId=v", {}, [("s3:GetObjectVersion", ["arn:aws:s3:::b/claims/c"])]),
        ("PUT", "/b/runs/r/run.json?x-id=PutObject", {}, [("s3:PutObject", ["arn:aws:s3:::b/runs/r/run.json"])]),
        ("GET", "/b?list-type=2&prefix=runs%2F", {}, [("s3:ListBucket", ["arn:aws:s3:::b"])]),
        ("HEAD", "/b", {}, [("s3:ListBucket", ["arn:aws:s3:::b"])]),
        ("DELETE", "/b/runs/r/x?x-id=DeleteObject", {}, [("s3:DeleteObject", ["arn:aws:s3:::b/runs/r/x"])]),
        ("DELETE", "/b/runs/r/x?versionId=v", {}, [("s3:DeleteObjectVersion", ["arn:aws:s3:::b/runs/r/x"])]),
        ("PUT", "/b", {}, [("s3:CreateBucket", ["arn:aws:s3:::b"])]),
        ("PUT", "/b?versioning", {}, [("s3:PutBucketVersioning", ["arn:aws:s3:::b"])]),
        ("GET", "/b?location", {}, [("s3:GetBucketLocation", ["arn:aws:s3:::b"])]),
        ("GET", "/", {}, [("s3:ListAllMyBuckets", ["*"])]),
        ("POST", "/b/k?uploads", {}, [("s3:PutObject", ["arn:aws:s3:::b/k"])]),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {}, [("s3:PutObject", ["arn:aws:s3:::b/k"])]),
        ("POST", "/b/k?uploadId=u", {}, [("s3:PutObject", ["arn:aws:s3:::b/k"])]),
        ("GET", "/b/k?uploadId=u", {}, [("s3:ListMultipartUploadParts", ["arn:aws:s3:::b/k"])]),
        ("DELETE", "/b/k?uploadId=u", {}, [("s3:AbortMultipartUpload", ["arn:aws:s3:::b/k"])]),
        ("GET", "/b/k?tagging&versionId=v", {}, [("s3:GetObjectVersionTagging", ["arn:aws:s3:::b/k"])]),
        (
            "PUT",
            "/b/runs/x",
            {"x-amz-copy-source": "b/incoming/y?versionId=3"},
            [("s3:PutObject", ["arn:aws:s3:::b/runs/x"]), ("s3:GetObjectVersion", ["arn:aws:s3:::b/incoming/y"])],
        ),
        # virtual-host style
        ("GET", "/incoming/x", {"Host": "b.s3.us-east-1.amazonaws.com"}, [("s3:GetObject", ["arn:aws:s3:::b/incoming/x"])]),
        ("GET", "/?list-type=2", {"Host": "b.localhost:4566"}, [("s3:ListBucket", ["arn:aws:s3:::b"])]),
    ],
)
def test_s3_requests(method, path, headers, expected):
    assert checks(method, path, "s3", **headers) == expected


def test_s3_delete_objects_is_authorized_per_key():
    body = b"<Delete><Object><Key>runs/a</Key></Object><Object><Key>runs/b</Key><VersionId>v</VersionId></Object></Delete>"
    assert checks("POST", "/b?delete", "s3", body) == [
        ("s3:DeleteObject", ["arn:aws:s3:::b/runs/a"]),
        ("s3:DeleteObjectVersion", ["arn:aws:s3:::b/runs/b"]),
    ]


def test_s3_context_keys():
    req = iam.request_from_http("GET", "/b?list-type=2&prefix=runs%2F&delimiter=%2F", signed("s3"), b"")
    assert req.context["s3:prefix"] == "runs/" and req.context["s3:delimiter"] == "/"
    assert req.context["aws:SecureTransport"] == "true"
    req = iam.request_from_http("GET", "/b/k?versionId=v7", signed("s3"), b"")
    assert req.context["s3:versionid"] == "v7"


def test_s3_unknown_subresource_is_unmapped():
    with pytest.raises(iam.UnmappedRequest, match="sub-resource"):
        iam.request_from_http("GET", "/b/k?torrent", signed("s3"), b"")


def test_presigned_url_credentials():
    path = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=Operator%2F20261130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0"
    assert iam.credential({}, path) == ("Operator", "us-east-1", "s3")
    assert checks("GET", path, "s3") == [("s3:GetObject", ["arn:aws:s3:::b/k"])]
    assert iam.credential({}, "/b/k") is None


# ------------------------------------------------------------------ request mapping: IoT


CERT = f"{IOT}:cert/" + "ab" * 32


@pytest.mark.parametrize(
    "method,path,body,headers,expected",
    [
        ("POST", "/certificate/register-no-ca", {"certificatePem": "x"}, {}, [("iot:RegisterCertificateWithoutCA", ["*"])]),
        ("GET", "/certificates/" + "ab" * 32, None, {}, [("iot:DescribeCertificate", [CERT])]),
        ("PUT", "/certificates/" + "ab" * 32 + "?newStatus=ACTIVE", None, {}, [("iot:UpdateCertificate", [CERT])]),
        # thingpress decommission: DeleteCertificate takes cert, DeleteThing and DescribeThing thing.
        ("DELETE", "/certificates/" + "ab" * 32 + "?forceDelete=false", None, {}, [("iot:DeleteCertificate", [CERT])]),
        ("DELETE", "/things/dev-1", None, {}, [("iot:DeleteThing", [f"{IOT}:thing/dev-1"])]),
        ("DELETE", "/things/dev-1?expectedVersion=3", None, {}, [("iot:DeleteThing", [f"{IOT}:thing/dev-1"])]),
        ("GET", "/things/dev-1", None, {}, [("iot:DescribeThing", [f"{IOT}:thing/dev-1"])]),
        # CreateThing takes thing (and billinggroup): the thing type names no resource of it.
        ("POST", "/things/dev%3A1", {"thingTypeName": "Widget"}, {}, [("iot:CreateThing", [f"{IOT}:thing/dev:1"])]),
        ("PATCH", "/things/dev-1", {"thingTypeName": "Widget"}, {}, [("iot:UpdateThing", [f"{IOT}:thing/dev-1"])]),
        ("GET", "/things/dev-1/principals", None, {}, [("iot:ListThingPrincipals", [f"{IOT}:thing/dev-1"])]),
        # AttachThingPrincipal takes only cert: the thing is not a resource of it.
        ("PUT", "/things/dev-1/principals", None, {"x-amzn-principal": CERT}, [("iot:AttachThingPrincipal", [CERT])]),
        # DetachThingPrincipal too.
        ("DELETE", "/things/dev-1/principals", None, {"x-amzn-principal": CERT}, [("iot:DetachThingPrincipal", [CERT])]),
        ("GET", "/principals/things", None, {"x-amzn-principal": CERT}, [("iot:ListPrincipalThings", [CERT])]),
        # AttachPolicy takes cert or thinggroup (the target): never the policy.
        ("PUT", "/target-policies/WidgetPolicy", {"target": CERT}, {}, [("iot:AttachPolicy", [CERT])]),
        ("PUT", "/target-policies/P", {"target": f"{IOT}:thinggroup/g"}, {}, [("iot:AttachPolicy", [f"{IOT}:thinggroup/g"])]),
        # DetachPolicy likewise (POST on the same path).
        ("POST", "/target-policies/WidgetPolicy", {"target": CERT}, {}, [("iot:DetachPolicy", [CERT])]),
        ("POST", "/target-policies/P", {"target": f"{IOT}:thinggroup/g"}, {}, [("iot:DetachPolicy", [f"{IOT}:thinggroup/g"])]),
        (
            "PUT",
            "/thing-groups/addThingToThingGroup",
            {"thingName": "dev-1", "thingGroupName": "fleet"},
            {},
            [("iot:AddThingToThingGroup", [f"{IOT}:thing/dev-1", f"{IOT}:thinggroup/fleet"])],
        ),
        (
            "PUT",
            "/thing-groups/removeThingFromThingGroup",
            {"thingName": "dev-1", "thingGroupName": "fleet"},
            {},
            [("iot:RemoveThingFromThingGroup", [f"{IOT}:thing/dev-1", f"{IOT}:thinggroup/fleet"])],
        ),
        (
            "PUT",
            "/thing-groups/removeThingFromThingGroup",
            {"thingArn": f"{IOT}:thing/dev-1", "thingGroupArn": f"{IOT}:thinggroup/fleet"},
            {},
            [("iot:RemoveThingFromThingGroup", [f"{IOT}:thing/dev-1", f"{IOT}:thinggroup/fleet"])],
        ),
        ("GET", "/thing-groups/fleet", None, {}, [("iot:DescribeThingGroup", [f"{IOT}:thinggroup/fleet"])]),
        ("GET", "/thing-types/Widget", None, {}, [("iot:DescribeThingType", [f"{IOT}:thingtype/Widget"])]),
        ("GET", "/policies/WidgetPolicy", None, {}, [("iot:GetPolicy", [f"{IOT}:policy/WidgetPolicy"])]),
        # ListAttachedPolicies takes no resource type (its target is no resource of it).
        ("POST", "/attached-policies/" + CERT.replace(":", "%3A").replace("/", "%2F"), None, {}, [("iot:ListAttachedPolicies", ["*"])]),
        ("GET", "/things/dev-1/thing-groups", None, {}, [("iot:ListThingGroupsForThing", [f"{IOT}:thing/dev-1"])]),
        ("GET", "/thing-groups/fleet/things", None, {}, [("iot:ListThingsInThingGroup", [f"{IOT}:thinggroup/fleet"])]),
        ("GET", "/things", None, {}, [("iot:ListThings", ["*"])]),
        ("GET", "/policies", None, {}, [("iot:ListPolicies", ["*"])]),
        ("GET", "/certificates", None, {}, [("iot:ListCertificates", ["*"])]),
        ("GET", "/thing-groups", None, {}, [("iot:ListThingGroups", ["*"])]),
        ("GET", "/thing-types", None, {}, [("iot:ListThingTypes", ["*"])]),
    ],
)
def test_iot_requests(method, path, body, headers, expected):
    raw = json.dumps(body).encode() if body is not None else b""
    assert checks(method, path, "iot", raw, **headers) == expected


def test_iot_every_call_the_project_makes_is_mapped():
    # The operations crates/ and functions/ call (grep .<operation>() there).
    made = {
        "RegisterCertificateWithoutCA", "DescribeCertificate", "CreateThing", "DescribeThing",
        "UpdateThing", "ListThingPrincipals", "ListPrincipalThings", "AttachThingPrincipal",
        "AttachPolicy", "ListAttachedPolicies", "AddThingToThingGroup", "ListThingGroupsForThing",
        "DescribeThingType", "DescribeThingGroup", "GetPolicy", "ListPolicies", "ListThings",
        "ListCertificates", "ListThingGroups", "ListThingTypes", "ListThingsInThingGroup",
        "UpdateCertificate", "DetachPolicy", "RemoveThingFromThingGroup", "DetachThingPrincipal",
        "DeleteCertificate", "DeleteThing",
    }
    names = {row[0] for row in iam._iot_model()}
    assert made <= names
    for op in made:
        assert iam.action_resource_types(f"iot:{op}") is not None, op


def test_iot_unknown_path_and_missing_resource_are_unmapped():
    with pytest.raises(iam.UnmappedRequest, match="no operation"):
        iam.request_from_http("GET", "/no/such/thing/at/all", signed("iot"), b"")
    with pytest.raises(iam.UnmappedRequest, match="cert"):
        iam.request_from_http("GET", "/principals/things", signed("iot"), b"")  # no principal header


# ------------------------------------------------------------------ Step Functions, Lambda, CloudFormation


@pytest.mark.parametrize(
    "op,body,expected",
    [
        ("StartExecution", {"stateMachineArn": SM, "input": "{}"}, [SM]),
        ("DescribeExecution", {"executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import:r1"}, [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import:r1"]),
        ("ListExecutions", {"stateMachineArn": SM}, [SM]),
        ("ListExecutions", {"mapRunArn": f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:tp-import/Map:1"}, [f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:tp-import/Map:1"]),
        ("ListMapRuns", {"executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import:r1"}, [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import:r1"]),
        ("DescribeMapRun", {"mapRunArn": f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:tp-import/Map:1"}, [f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:tp-import/Map:1"]),
        ("RedriveExecution", {"executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import:r1"}, [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import:r1"]),
    ],
)
def test_states_requests(op, body, expected):
    got = checks("POST", "/", "states", json.dumps(body).encode(), **{"X-Amz-Target": f"AWSStepFunctions.{op}"})
    assert got == [(f"states:{op}", expected)]


def test_states_without_target_or_arn_is_unmapped():
    with pytest.raises(iam.UnmappedRequest):
        iam.request_from_http("POST", "/", signed("states"), b"{}")
    with pytest.raises(iam.UnmappedRequest):
        iam.request_from_http("POST", "/", signed("states", **{"X-Amz-Target": "AWSStepFunctions.StartExecution"}), b"{}")


@pytest.mark.parametrize(
    "ref,expected",
    [
        ("tp-split", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:tp-split"),
        ("tp-split:live", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:tp-split:live"),
        (f"{ACCOUNT}:function:tp-split", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:tp-split"),
        (f"arn%3Aaws%3Alambda%3A{REGION}%3A{ACCOUNT}%3Afunction%3Atp-split", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:tp-split"),
        ("tp-split/invocations?Qualifier=3", None),
    ],
)
def test_lambda_invoke(ref, expected):
    if expected is None:
        got = checks("POST", "/2015-03-31/functions/tp-split/invocations?Qualifier=3", "lambda")
        assert got == [("lambda:InvokeFunction", [f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:tp-split:3"])]
        return
    assert checks("POST", f"/2015-03-31/functions/{ref}/invocations", "lambda") == [("lambda:InvokeFunction", [expected])]


def test_cloudformation_describe_stacks():
    got = checks("POST", "/", "cloudformation", b"Action=DescribeStacks&StackName=tp&Version=2010-05-15")
    assert got == [("cloudformation:DescribeStacks", [f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/tp/*"])]
    assert checks("POST", "/", "cloudformation", b"Action=DescribeStacks") == [("cloudformation:DescribeStacks", ["*"])]


TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/tp-budget"


def ddb(op, body):
    return checks("POST", "/", "dynamodb", json.dumps(body).encode(), **{"X-Amz-Target": f"DynamoDB_20120810.{op}"})


def test_dynamodb_requests():
    holder = {"TableName": "tp-budget", "Key": {"pk": {"S": "holders"}, "sk": {"S": "r#chunk-00001"}}}
    assert ddb("UpdateItem", holder) == [("dynamodb:UpdateItem", [TABLE])]
    assert ddb("DeleteItem", holder) == [("dynamodb:DeleteItem", [TABLE])]
    assert ddb("Query", {"TableName": "tp-budget", "ConsistentRead": True}) == [("dynamodb:Query", [TABLE])]
    assert ddb("Query", {"TableName": "tp-budget", "IndexName": "byGroup"}) == [("dynamodb:Query", [f"{TABLE}/index/byGroup"])]
    assert ddb("DescribeTable", {"TableName": TABLE}) == [("dynamodb:DescribeTable", [TABLE])]  # an ARN as the name
    assert ddb("BatchWriteItem", {"RequestItems": {"tp-budget": [], "other": []}}) == [
        ("dynamodb:BatchWriteItem", [TABLE, TABLE.replace("tp-budget", "other")])
    ]
    assert ddb("ListTables", {}) == [("dynamodb:ListTables", ["*"])]


def test_dynamodb_requests_it_cannot_name_are_unmapped():
    with pytest.raises(iam.UnmappedRequest, match="which table"):
        ddb("UpdateItem", {"Key": {}})
    with pytest.raises(iam.UnmappedRequest, match="not in the IAM definitions"):
        ddb("NoSuchOperation", {"TableName": "t"})
    with pytest.raises(iam.UnmappedRequest, match="not JSON"):
        checks("POST", "/", "dynamodb", b"{", **{"X-Amz-Target": "DynamoDB_20120810.GetItem"})
    with pytest.raises(iam.UnmappedRequest, match="X-Amz-Target"):
        checks("POST", "/", "dynamodb", b"{}")


def test_service_quotas_requests():
    def sq(op, body):
        return checks("POST", "/", "servicequotas", json.dumps(body).encode(), **{"X-Amz-Target": f"ServiceQuotasV20190624.{op}"})

    quota = f"arn:aws:servicequotas:{REGION}:{ACCOUNT}:iot/L-4671C7C8"
    assert sq("GetServiceQuota", {"ServiceCode": "iot", "QuotaCode": "L-4671C7C8"}) == [("servicequotas:GetServiceQuota", [quota])]
    # No quota named, or an action without a resource type: "*".
    assert sq("GetServiceQuota", {"ServiceCode": "iot"}) == [("servicequotas:GetServiceQuota", ["*"])]
    assert sq("GetAWSDefaultServiceQuota", {"ServiceCode": "iot", "QuotaCode": "L-4671C7C8"}) == [
        ("servicequotas:GetAWSDefaultServiceQuota", ["*"])
    ]
    assert sq("ListServiceQuotas", {"ServiceCode": "iot"}) == [("servicequotas:ListServiceQuotas", ["*"])]
    with pytest.raises(iam.UnmappedRequest, match="not in the IAM definitions"):
        sq("NoSuchOperation", {})


def test_budget_and_quota_calls_are_allowed_with_the_grant_and_denied_without():
    lease = ("POST", "/", "dynamodb", json.dumps({"TableName": "tp-budget"}).encode())
    query = {"X-Amz-Target": "DynamoDB_20120810.Query"}
    update = {"X-Amz-Target": "DynamoDB_20120810.UpdateItem"}
    granted = principal(allow(["dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:DeleteItem"], TABLE))
    assert iam.authorize(granted, request(*lease, **query)) is None
    assert iam.authorize(granted, request(*lease, **update)) is None
    other_table = ("POST", "/", "dynamodb", json.dumps({"TableName": "other"}).encode())
    assert iam.authorize(granted, request(*other_table, **update)) is not None
    denial = iam.authorize(principal(allow("dynamodb:Query", TABLE)), request(*lease, **update))
    assert denial is not None and (denial.action, denial.resource) == ("dynamodb:UpdateItem", TABLE)
    get = ("POST", "/", "servicequotas", json.dumps({"ServiceCode": "iot", "QuotaCode": "L-4671C7C8"}).encode())
    target = {"X-Amz-Target": "ServiceQuotasV20190624.GetServiceQuota"}
    quotas = principal(allow("servicequotas:GetServiceQuota", "arn:aws:servicequotas:*:*:iot/*"))
    assert iam.authorize(quotas, request(*get, **target)) is None
    vpc = ("POST", "/", "servicequotas", json.dumps({"ServiceCode": "vpc", "QuotaCode": "L-7E9ECCDB"}).encode())
    assert iam.authorize(quotas, request(*vpc, **target)) is not None
    default = {"X-Amz-Target": "ServiceQuotasV20190624.GetAWSDefaultServiceQuota"}
    assert iam.authorize(quotas, request(*get, **default)) is not None
    assert iam.authorize(principal(allow("servicequotas:GetAWSDefaultServiceQuota", "*")), request(*get, **default)) is None


def test_unknown_service_and_unsigned_are_unmapped():
    with pytest.raises(iam.UnmappedRequest, match="sqs"):
        iam.request_from_http("POST", "/", signed("sqs"), b"")
    with pytest.raises(iam.UnmappedRequest, match="not signed"):
        iam.request_from_http("GET", "/b/k", {}, b"")


# ------------------------------------------------------------------ evaluation


def principal(*statements):
    return iam.parse_principals({"principals": {"K": {"name": "RegisterFunction", "statements": list(statements)}}})["K"]


def allow(action, resource, **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def request(method, path, service, body=b"", **headers):
    return iam.request_from_http(method, path, signed(service, **headers), body)


ATTACH_POLICY = ("PUT", "/target-policies/P", "iot", json.dumps({"target": CERT}).encode())


def test_attach_policy_on_policy_arn_allows_nothing_but_on_cert_it_does():
    assert iam.authorize(principal(allow("iot:AttachPolicy", f"{IOT}:policy/*")), request(*ATTACH_POLICY)) is not None
    assert iam.authorize(principal(allow("iot:AttachPolicy", f"{IOT}:cert/*")), request(*ATTACH_POLICY)) is None


def test_decommission_grants_scope_what_the_reference_says():
    # DetachPolicy as AttachPolicy: the target, never the policy.
    detach = ("POST", "/target-policies/P", "iot", json.dumps({"target": CERT}).encode())
    assert iam.authorize(principal(allow("iot:DetachPolicy", f"{IOT}:policy/*")), request(*detach)) is not None
    assert iam.authorize(principal(allow("iot:DetachPolicy", f"{IOT}:cert/*")), request(*detach)) is None
    # RemoveThingFromThingGroup needs both the thing and the group.
    remove = ("PUT", "/thing-groups/removeThingFromThingGroup", "iot", b'{"thingName": "t", "thingGroupName": "G"}')
    assert iam.authorize(principal(allow("iot:RemoveThingFromThingGroup", f"{IOT}:thinggroup/*")), request(*remove)) is not None
    both = allow("iot:RemoveThingFromThingGroup", [f"{IOT}:thing/*", f"{IOT}:thinggroup/*"])
    assert iam.authorize(principal(both), request(*remove)) is None
    # DetachThingPrincipal: the certificate, not the thing.
    detach_cert = ("DELETE", "/things/t/principals", "iot", b"")
    assert iam.authorize(principal(allow("iot:DetachThingPrincipal", f"{IOT}:thing/*")), request(*detach_cert, **{"x-amzn-principal": CERT})) is not None
    assert iam.authorize(principal(allow("iot:DetachThingPrincipal", f"{IOT}:cert/*")), request(*detach_cert, **{"x-amzn-principal": CERT})) is None
    # ListAttachedPolicies takes no resource type: a cert grant allows nothing, only "*" does.
    listing = ("POST", "/attached-policies/" + CERT.replace(":", "%3A").replace("/", "%2F"), "iot")
    assert iam.authorize(principal(allow("iot:ListAttachedPolicies", f"{IOT}:cert/*")), request(*listing)) is not None
    assert iam.authorize(principal(allow("iot:ListAttachedPolicies", "*")), request(*listing)) is None


def test_action_without_resource_type_needs_star():
    reg = request("POST", "/certificate/register-no-ca", "iot", b"{}")
    assert iam.authorize(principal(allow("iot:RegisterCertificateWithoutCA", f"{IOT}:cert/*")), reg) is not None
    assert iam.authorize(principal(allow("iot:RegisterCertificateWithoutCA", "*")), reg) is None


def test_every_resource_of_a_request_must_be_allowed():
    add = request("PUT", "/thing-groups/addThingToThingGroup", "iot", json.dumps({"thingName": "t", "thingGroupName": "g"}).encode())
    only_things = principal(allow("iot:AddThingToThingGroup", f"{IOT}:thing/*"))
    denial = iam.authorize(only_things, add)
    assert denial is not None and denial.resource == f"{IOT}:thinggroup/g"
    assert iam.authorize(principal(allow("iot:AddThingToThingGroup", [f"{IOT}:thing/*", f"{IOT}:thinggroup/*"])), add) is None


def test_get_object_version_needs_its_own_grant():
    get = request("GET", "/b/runs/r/manifest/x.pem?versionId=v1", "s3")
    denial = iam.authorize(principal(allow("s3:GetObject", "arn:aws:s3:::b/runs/*")), get)
    assert denial is not None
    assert denial.message == (
        "User: arn:aws:sts::123456789012:assumed-role/RegisterFunction/RegisterFunction is not authorized to perform: "
        's3:GetObjectVersion on resource: "arn:aws:s3:::b/runs/r/manifest/x.pem" because no identity-based policy '
        "allows the s3:GetObjectVersion action"
    )
    assert iam.authorize(principal(allow(["s3:GetObject", "s3:GetObjectVersion"], "arn:aws:s3:::b/runs/*")), get) is None


def test_explicit_deny_wins_and_is_named():
    get = request("GET", "/b/runs/r/x", "s3")
    p = principal(allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/runs/*"})
    denial = iam.authorize(p, get)
    assert denial is not None and denial.explicit and "explicit deny in an identity-based policy" in denial.message


def test_action_names_are_case_insensitive_with_wildcards():
    get = request("GET", "/b/k", "s3")
    assert iam.authorize(principal(allow("S3:getobject", "*")), get) is None
    assert iam.authorize(principal(allow("s3:Get*", "*")), get) is None
    assert iam.authorize(principal(allow("s3:Put*", "*")), get) is not None
    assert iam.authorize(principal(allow("*", "*")), get) is None


def test_not_action_and_not_resource():
    get = request("GET", "/b/k", "s3")
    assert iam.authorize(principal({"Effect": "Allow", "NotAction": "iot:*", "Resource": "*"}), get) is None
    assert iam.authorize(principal({"Effect": "Allow", "NotAction": "s3:Get*", "Resource": "*"}), get) is not None
    assert iam.authorize(principal({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::b/k"}), get) is not None
    assert iam.authorize(principal({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::other/*"}), get) is None


@pytest.mark.parametrize(
    "condition,allowed",
    [
        ({"Bool": {"aws:SecureTransport": "true"}}, True),
        ({"Bool": {"aws:SecureTransport": False}}, False),
        ({"StringEquals": {"s3:prefix": "runs/"}}, True),
        ({"StringEquals": {"s3:prefix": ["x/", "runs/"]}}, True),
        ({"StringEquals": {"s3:prefix": "Runs/"}}, False),
        ({"StringEqualsIgnoreCase": {"s3:prefix": "RUNS/"}}, True),
        ({"StringNotEquals": {"s3:prefix": "runs/"}}, False),
        ({"StringLike": {"s3:prefix": "run?/*"}}, True),
        ({"StringNotLike": {"s3:prefix": "incoming/*"}}, True),
        ({"StringEquals": {"s3:delimiter": "/"}}, False),  # key absent
        ({"StringEqualsIfExists": {"s3:delimiter": "/"}}, True),
        ({"StringNotEquals": {"s3:delimiter": "/"}}, True),  # negated operators hold on an absent key
        ({"Null": {"s3:delimiter": "true"}}, True),
        ({"Null": {"s3:prefix": "true"}}, False),
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}, False),
        ({"ArnEqualsIfExists": {"aws:PrincipalArn": "arn:aws:iam::1:role/x"}}, True),
        ({"StringEquals": {"AWS:REQUESTEDREGION": REGION}}, True),  # keys are case-insensitive
    ],
)
def test_conditions(condition, allowed):
    listing = request("GET", "/b?list-type=2&prefix=runs%2F", "s3")
    p = principal(allow("s3:ListBucket", "arn:aws:s3:::b", Condition=condition))
    assert (iam.authorize(p, listing) is None) is allowed


def test_arn_like_condition():
    listing = request("GET", "/b?list-type=2", "s3")
    cond = {"ArnLike": {"aws:SourceArn": "arn:aws:events:*:*:rule/*"}}
    p = principal(allow("s3:ListBucket", "*", Condition=cond))
    assert iam.authorize(p, listing) is not None
    listing.context["aws:SourceArn"] = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/x"
    assert iam.authorize(p, listing) is None


def test_copy_object_needs_read_on_the_source():
    copy = request("PUT", "/b/runs/x", "s3", **{"x-amz-copy-source": "/b/incoming/y"})
    only_put = principal(allow("s3:PutObject", "arn:aws:s3:::b/runs/*"))
    denial = iam.authorize(only_put, copy)
    assert denial is not None and denial.action == "s3:GetObject" and denial.resource == "arn:aws:s3:::b/incoming/y"


@pytest.mark.parametrize(
    "body,message",
    [
        ({"principals": []}, "principals"),
        ({"principals": {"K": {"name": "", "statements": []}}}, "name"),
        ({"principals": {"K": {"statements": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]}}}, "Effect"),
        ({"principals": {"K": {"statements": [{"Effect": "Allow", "Resource": "*"}]}}}, "Action"),
        ({"principals": {"K": {"statements": [{"Effect": "Allow", "Action": "s3:*"}]}}}, "Resource"),
        ({"principals": {"K": {"statements": [{"Effect": "Allow", "Action": "GetObject", "Resource": "*"}]}}}, "service:Action"),
        ({"principals": {"K": {"statements": [allow("s3:*", "arn:aws:s3:::${ImportBucketName}/*")]}}}, "placeholder"),
        ({"principals": {"K": {"statements": [allow("s3:*", "*", Principal="*")]}}}, "Principal"),
        ({"principals": {"K": {"statements": [allow("s3:*", "*", Condition={"DateLessThan": {"aws:CurrentTime": "x"}})]}}}, "not supported"),
        ({"principals": {"K": {"statements": [allow("s3:*", "*", Condition={"Bool": {}})]}}}, "Bool"),
        ({"principals": {"K": {"statements": [allow("s3:*", [])]}}}, "non-empty"),
        ({"principals": {"K": {"statements": "nope"}}}, "list"),
    ],
)
def test_bad_principals_are_refused_clearly(body, message):
    with pytest.raises(ValueError, match=message):
        iam.parse_principals(body)


def test_policy_document_and_custom_arn():
    body = {"principals": {"Operator": {"name": "Operator", "arn": "arn:aws:iam::123456789012:user/op", "statements": {"Version": "2012-10-17", "Statement": [allow("s3:*", "*")]}}}}
    p = iam.parse_principals(body)["Operator"]
    assert p.arn == "arn:aws:iam::123456789012:user/op" and len(p.statements) == 1


# ------------------------------------------------------------------ AWS's answers


def test_denied_answers_per_service():
    status, headers, body = iam.denied_answer("s3", 'User: x is not authorized to perform: s3:GetObject on resource: "a&b"', "R1")
    assert status == 403 and headers["Content-Type"] == "application/xml"
    assert b"<Code>AccessDenied</Code>" in body and b"&quot;a&amp;b&quot;" in body and b"<RequestId>R1</RequestId>" in body
    status, headers, body = iam.denied_answer("iot", "m", "R")
    assert status == 403 and headers["x-amzn-ErrorType"] == "AccessDeniedException" and json.loads(body) == {"message": "m"}
    status, headers, body = iam.denied_answer("lambda", "m", "R")
    assert status == 403 and json.loads(body) == {"Type": "User", "Message": "m"}
    status, headers, body = iam.denied_answer("states", "m", "R")
    assert status == 400 and json.loads(body) == {"__type": "AccessDeniedException", "message": "m"}
    status, headers, body = iam.denied_answer("cloudformation", "m", "R")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body


@pytest.mark.parametrize("service", ["s3", "iot", "stepfunctions", "lambda", "cloudformation", "dynamodb", "service-quotas"])
def test_botocore_parses_the_denials_as_access_denied(service):
    """botocore's own parsers read our answers as AWS's error codes."""
    import botocore.session
    from botocore.compat import HTTPHeaders
    from botocore.parsers import create_parser

    model = botocore.session.get_session().get_service_model(service)
    signing = {"stepfunctions": "states", "service-quotas": "servicequotas"}.get(service, service)
    status, headers, body = iam.denied_answer(signing, "User: u is not authorized", "R")
    op = {
        "s3": "GetObject",
        "iot": "AttachPolicy",
        "stepfunctions": "StartExecution",
        "lambda": "Invoke",
        "cloudformation": "DescribeStacks",
        "dynamodb": "UpdateItem",
        "service-quotas": "GetServiceQuota",
    }[service]
    wire = HTTPHeaders()
    for k, v in headers.items():
        wire[k] = v
    parsed = create_parser(model.metadata["protocol"]).parse(
        {"status_code": status, "headers": wire, "body": body}, model.operation_model(op).output_shape
    )
    assert parsed["Error"]["Code"] in ("AccessDenied", "AccessDeniedException")
    assert "not authorized" in parsed["Error"]["Message"]


# ------------------------------------------------------------------ lint


def test_lint_flags_grants_that_scope_nothing():
    doc = {
        "Statement": [
            allow("iot:AttachThingPrincipal", [f"{IOT}:thing/*", f"{IOT}:cert/*"], Sid="Attach"),
            allow("iot:AttachPolicy", f"{IOT}:policy/*"),
            allow(["iot:CreateThing", "iot:UpdateThing"], [f"{IOT}:thing/*", f"{IOT}:thingtype/*"]),
            allow("iot:RegisterCertificateWithoutCA", f"{IOT}:cert/*"),
            allow("iot:ListPrincipalThings", "*"),
            allow("s3:ListBucket", "arn:aws:s3:::b"),
            allow("s3:GetObject", "arn:aws:s3:::b"),
            allow("s3:Get*", "arn:aws:s3:::b/*"),
            allow("iot:NoSuchThing", "*"),
            {"Effect": "Deny", "Action": "iot:AttachPolicy", "Resource": f"{IOT}:policy/*"},
        ]
    }
    got = {(p.where, p.action, p.resource) for p in iam.lint(doc)}
    assert got == {
        ("policy#0/Attach", "iot:AttachThingPrincipal", f"{IOT}:thing/*"),
        ("policy#1", "iot:AttachPolicy", f"{IOT}:policy/*"),
        ("policy#2", "iot:CreateThing", f"{IOT}:thingtype/*"),
        ("policy#2", "iot:UpdateThing", f"{IOT}:thingtype/*"),
        ("policy#3", "iot:RegisterCertificateWithoutCA", f"{IOT}:cert/*"),
        ("policy#6", "s3:GetObject", "arn:aws:s3:::b"),
        ("policy#8", "iot:NoSuchThing", "-"),
    }


def test_lint_reads_cloudformation_templates_with_intrinsics():
    template = {
        "Resources": {
            "RegisterFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Policies": [
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Sid": "AttachPoliciesToCertificates",
                                    "Effect": "Allow",
                                    "Action": "iot:AttachPolicy",
                                    "Resource": [
                                        {"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:cert/*"},
                                        {"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:policy/*"},
                                    ],
                                },
                                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": {"Fn::GetAtt": ["ImportBucket", "Arn"]}},
                                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::Sub": "${ImportBucket.Arn}/runs/*"}},
                            ],
                        }
                    ]
                },
            },
            "ImportStateMachineRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyName": "ImportStateMachine",
                            "PolicyDocument": {
                                "Statement": [
                                    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": {"Fn::If": ["C", {"Fn::Sub": "arn:aws:lambda:*:*:function:x"}, {"Ref": "AWS::NoValue"}]}},
                                    {"Effect": "Allow", "Action": "states:StartExecution", "Resource": {"Fn::Join": [":", ["arn:aws:states:r:a:execution", "x"]]}},
                                ]
                            },
                        }
                    ]
                },
            },
        }
    }
    got = [str(p) for p in iam.lint(template)]
    assert got == [
        "RegisterFunction/0#0/AttachPoliciesToCertificates: iot:AttachPolicy on arn:*:iot:*:*:policy/*: matches none of its resource types (cert, thinggroup)",
        "ImportStateMachineRole/ImportStateMachine#1: states:StartExecution on arn:aws:states:r:a:execution:x: matches none of its resource types (statemachine)",
    ]


def test_lint_cli(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"principals": {"RegisterFunction": {"name": "RegisterFunction", "statements": [allow("iot:AttachPolicy", f"{IOT}:policy/*")]}}}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps([allow("iot:AttachPolicy", f"{IOT}:cert/*")]))
    run = [sys.executable, str(HERE / "iam.py"), "lint"]
    out = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout.startswith("RegisterFunction#0: iot:AttachPolicy on")
    out = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == ""
    out = subprocess.run([*run, str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert out.returncode == 2 and "cannot read" in out.stderr


# ------------------------------------------------------------------ the operator policy

OPERATOR_POLICY = HERE.parent / "infra" / "operator-policy.json"


def operator():
    doc = json.loads(OPERATOR_POLICY.read_text())
    entry = iam.operator_principal(doc, "bkt", SM, REGION, ACCOUNT, "tp", "tp-budget")
    return iam.parse_principals({"principals": {"Operator": entry}})["Operator"]


def test_operator_policy_is_filled_and_lints_clean():
    doc = json.loads(OPERATOR_POLICY.read_text())
    assert iam.lint(doc) == []
    entry = iam.operator_principal(doc, "bkt", SM, REGION, ACCOUNT, "tp", "tp-budget")
    assert entry["name"] == "Operator" and "${" not in json.dumps(entry)
    with pytest.raises(ValueError, match=r"Statement\[0\]\.Resource: no value for \$\{AWS::AccountId\}, \$\{AWS::StackName\}"):
        iam.fill_placeholders(doc, {"AWS::Region": REGION})


EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:tp-import:lot-1"
MAP_RUN = f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:tp-import/ImportChunks:1"


@pytest.mark.parametrize(
    "method,path,service,body,headers",
    [
        ("PUT", "/bkt/profiles/widget.json", "s3", b"", {}),
        ("GET", "/bkt/profiles/widget.json", "s3", b"", {}),
        ("GET", "/bkt?list-type=2&prefix=profiles%2F", "s3", b"", {}),
        ("PUT", "/bkt/incoming/widget/reel.pem", "s3", b"", {}),
        ("PUT", "/bkt/runs/lot-1/manifest/reel.pem", "s3", b"", {}),
        ("GET", "/bkt/runs/lot-1/report.json", "s3", b"", {}),
        ("HEAD", "/bkt/runs/lot-1/chunks.json", "s3", b"", {}),
        ("GET", "/bkt?list-type=2&prefix=runs%2Flot-1%2Fresults%2F", "s3", b"", {}),
        ("DELETE", "/bkt/runs/lot-1/results/00001.jsonl", "s3", b"", {}),
        ("POST", "/", "states", json.dumps({"stateMachineArn": SM, "name": "lot-1", "input": "{}"}).encode(), {"X-Amz-Target": "AWSStepFunctions.StartExecution"}),
        ("POST", "/", "states", json.dumps({"stateMachineArn": SM}).encode(), {"X-Amz-Target": "AWSStepFunctions.ListExecutions"}),
        ("POST", "/", "states", json.dumps({"executionArn": EXECUTION}).encode(), {"X-Amz-Target": "AWSStepFunctions.DescribeExecution"}),
        ("POST", "/", "states", json.dumps({"executionArn": EXECUTION}).encode(), {"X-Amz-Target": "AWSStepFunctions.RedriveExecution"}),
        ("POST", "/", "states", json.dumps({"executionArn": EXECUTION}).encode(), {"X-Amz-Target": "AWSStepFunctions.ListMapRuns"}),
        ("POST", "/", "states", json.dumps({"mapRunArn": MAP_RUN}).encode(), {"X-Amz-Target": "AWSStepFunctions.DescribeMapRun"}),
        ("GET", "/thing-types/Widget", "iot", b"", {}),
        ("GET", "/thing-groups/fleet", "iot", b"", {}),
        ("GET", "/policies/WidgetPolicy", "iot", b"", {}),
        ("GET", "/certificates/" + "ab" * 32, "iot", b"", {}),
        ("GET", "/things/dev-1", "iot", b"", {}),
        ("GET", "/things/dev-1/principals", "iot", b"", {}),
        ("GET", "/things/dev-1/thing-groups", "iot", b"", {}),
        ("POST", "/attached-policies/x", "iot", b"", {}),
        ("GET", "/things", "iot", b"", {}),
        ("GET", "/thing-groups/fleet/things", "iot", b"", {}),
        ("POST", "/", "cloudformation", b"Action=DescribeStacks&StackName=tp", {}),
        ("POST", "/", "dynamodb", json.dumps({"TableName": "tp-budget"}).encode(), {"X-Amz-Target": "DynamoDB_20120810.UpdateItem"}),
        ("POST", "/", "dynamodb", json.dumps({"TableName": "tp-budget"}).encode(), {"X-Amz-Target": "DynamoDB_20120810.Query"}),
        ("POST", "/", "dynamodb", json.dumps({"TableName": "tp-budget"}).encode(), {"X-Amz-Target": "DynamoDB_20120810.DeleteItem"}),
        ("POST", "/", "servicequotas", json.dumps({"ServiceCode": "iot", "QuotaCode": "L-4671C7C8"}).encode(), {"X-Amz-Target": "ServiceQuotasV20190624.GetServiceQuota"}),
        ("POST", "/", "servicequotas", json.dumps({"ServiceCode": "iot", "QuotaCode": "L-4671C7C8"}).encode(), {"X-Amz-Target": "ServiceQuotasV20190624.GetAWSDefaultServiceQuota"}),
        # thingpress smoke: its throwaway group, policy and profile, made and removed.
        ("POST", "/thing-groups/thingpress-smoke-20261201T101500Z-42", "iot", b"{}", {}),
        ("DELETE", "/thing-groups/thingpress-smoke-20261201T101500Z-42", "iot", b"", {}),
        ("POST", "/policies/thingpress-smoke-20261201T101500Z-42", "iot", b'{"policyDocument": "{}"}', {}),
        ("DELETE", "/policies/thingpress-smoke-20261201T101500Z-42", "iot", b"", {}),
        ("DELETE", "/bkt/profiles/thingpress-smoke-20261201T101500Z-42.json", "s3", b"", {}),
    ],
)
def test_operator_may_do_what_the_cli_does(method, path, service, body, headers):
    assert iam.authorize(operator(), request(method, path, service, body, **headers)) is None


@pytest.mark.parametrize(
    "method,path,service,body,headers",
    [
        ("PUT", "/bkt/claims/x", "s3", b"", {}),  # claims are Split's
        ("DELETE", "/bkt/runs/lot-1/report.json", "s3", b"", {}),
        ("GET", "/bkt?list-type=2", "s3", b"", {}),  # listing the whole bucket
        ("GET", "/other/profiles/widget.json", "s3", b"", {}),
        ("POST", "/", "states", json.dumps({"stateMachineArn": SM + "-other"}).encode(), {"X-Amz-Target": "AWSStepFunctions.StartExecution"}),
        ("POST", "/", "states", json.dumps({"executionArn": EXECUTION}).encode(), {"X-Amz-Target": "AWSStepFunctions.StopExecution"}),
        ("POST", "/certificate/register-no-ca", "iot", b"{}", {}),
        ("PUT", "/target-policies/P", "iot", json.dumps({"target": CERT}).encode(), {}),
        ("POST", "/", "cloudformation", b"Action=DescribeStacks&StackName=other", {}),
        ("POST", "/", "dynamodb", json.dumps({"TableName": "other"}).encode(), {"X-Amz-Target": "DynamoDB_20120810.UpdateItem"}),
        ("POST", "/", "dynamodb", json.dumps({"TableName": "tp-budget"}).encode(), {"X-Amz-Target": "DynamoDB_20120810.Scan"}),
        ("POST", "/", "servicequotas", json.dumps({"ServiceCode": "vpc", "QuotaCode": "L-7E9ECCDB"}).encode(), {"X-Amz-Target": "ServiceQuotasV20190624.GetServiceQuota"}),
        # The smoke test's grants reach only resources named thingpress-smoke-*.
        ("POST", "/thing-groups/fleet", "iot", b"{}", {}),
        ("DELETE", "/thing-groups/fleet", "iot", b"", {}),
        ("DELETE", "/thing-groups/thingpress-fleet", "iot", b"", {}),
        ("POST", "/policies/WidgetPolicy", "iot", b'{"policyDocument": "{}"}', {}),
        ("DELETE", "/policies/thingpress-WidgetPolicy", "iot", b"", {}),
        ("DELETE", "/bkt/profiles/widget.json", "s3", b"", {}),
        ("DELETE", "/bkt/profiles/thingpress-widget.json", "s3", b"", {}),
        ("DELETE", "/things/thingpress-smoke-20261201T101500Z-42-device-0", "iot", b"", {}),  # decommission's, not the CLI's
        ("DELETE", "/certificates/" + "ab" * 32, "iot", b"", {}),
    ],
)
def test_operator_may_not_do_more(method, path, service, body, headers):
    assert iam.authorize(operator(), request(method, path, service, body, **headers)) is not None


# ------------------------------------------------------------------ the template's roles


def _template_principals():
    import stack

    st = stack.load_stack(stack.DEFAULT_TEMPLATE, {}, "tp", "bkt")
    body = stack.iam_principals(st)
    body["principals"]["Operator"] = stack.operator_principal(st)
    return st, iam.parse_principals(body)


def test_the_templates_roles_allow_the_pipelines_calls():
    """What each function, the state machine (moto's SFN calls) and the trigger do in one
    import, authorized against infra/template.yaml's roles as the local stack deploys them."""
    st, principals = _template_principals()
    split_fn = next(f.name for f in st.functions.values() if f.logical_id == "SplitFunction")
    lease = json.dumps({"TableName": st.tables["BudgetTable"].name}).encode()
    calls = {
        "SplitFunction": [
            ("HEAD", "/bkt/incoming/p/x.pem", "s3", b"", {}),
            ("GET", "/bkt/incoming/p/x.pem?versionId=1", "s3", b"", {}),
            ("HEAD", "/bkt/runs/r/manifest/x.pem", "s3", b"", {}),
            ("GET", "/bkt/runs/r/manifest/x.pem?versionId=1", "s3", b"", {}),
            ("GET", "/bkt/profiles/p.json", "s3", b"", {}),
            ("PUT", "/bkt/claims/abc", "s3", b"", {}),
            ("PUT", "/bkt/runs/r/chunks.json", "s3", b"", {}),
            ("GET", "/thing-types/T", "iot", b"", {}),
            ("GET", "/thing-groups/G", "iot", b"", {}),
            ("GET", "/policies/P", "iot", b"", {}),
        ],
        "RegisterFunction": [
            ("POST", "/certificate/register-no-ca", "iot", b"{}", {}),
            ("GET", "/certificates/abc", "iot", b"", {}),
            ("GET", "/principals/things", "iot", b"", {"x-amzn-principal": CERT}),
            ("POST", "/things/t", "iot", b'{"thingTypeName": "T"}', {}),
            ("PATCH", "/things/t", "iot", b"{}", {}),
            ("PUT", "/things/t/principals", "iot", b"", {"x-amzn-principal": CERT}),
            ("PUT", "/target-policies/P", "iot", json.dumps({"target": CERT}).encode(), {}),
            ("PUT", "/thing-groups/addThingToThingGroup", "iot", b'{"thingName": "t", "thingGroupName": "G"}', {}),
            # thingpress activate.
            ("GET", "/things/t/principals", "iot", b"", {}),
            ("PUT", "/certificates/abc?newStatus=ACTIVE", "iot", b"", {}),
            # thingpress decommission: read the mark, the policies and groups, then undo.
            ("GET", "/things/t", "iot", b"", {}),
            ("POST", "/attached-policies/" + CERT.replace(":", "%3A").replace("/", "%2F"), "iot", b"", {}),
            ("GET", "/things/t/thing-groups", "iot", b"", {}),
            ("POST", "/target-policies/P", "iot", json.dumps({"target": CERT}).encode(), {}),
            ("PUT", "/thing-groups/removeThingFromThingGroup", "iot", b'{"thingName": "t", "thingGroupName": "G"}', {}),
            ("DELETE", "/things/t/principals", "iot", b"", {"x-amzn-principal": CERT}),
            ("PUT", "/certificates/abc?newStatus=INACTIVE", "iot", b"", {}),
            ("DELETE", "/certificates/abc?forceDelete=false", "iot", b"", {}),
            ("DELETE", "/things/t", "iot", b"", {}),
            ("GET", "/bkt/runs/r/decorated/00000.jsonl", "s3", b"", {}),
            ("PUT", "/bkt/runs/r/results/00000.jsonl", "s3", b"", {}),
            # The budget: its own lease written and deleted, every lease read.
            ("POST", "/", "dynamodb", lease, {"X-Amz-Target": "DynamoDB_20120810.UpdateItem"}),
            ("POST", "/", "dynamodb", lease, {"X-Amz-Target": "DynamoDB_20120810.Query"}),
            ("POST", "/", "dynamodb", lease, {"X-Amz-Target": "DynamoDB_20120810.DeleteItem"}),
        ],
        "ImportStateMachine": [
            ("POST", f"/2015-03-31/functions/arn:aws:lambda:{REGION}:{ACCOUNT}:function:{split_fn}/invocations", "lambda", b"", {}),
            ("GET", "/bkt/runs/r/chunks.json", "s3", b"", {}),
            ("PUT", "/bkt/runs/r/map/u/manifest.json", "s3", b"", {}),
        ],
        "ImportTriggerRule": [
            ("POST", "/", "states", json.dumps({"stateMachineArn": st.state_machine.arn}).encode(), {"X-Amz-Target": "AWSStepFunctions.StartExecution"}),
        ],
    }
    for who, requests in calls.items():
        for method, path, service, body, headers in requests:
            denial = iam.authorize(principals[who], request(method, path, service, body, **headers))
            assert denial is None, f"{who} {method} {path}: {denial.message}"
    # ...and no more than that: each role is its own.
    assert iam.authorize(principals["DecorateFunction"], request("PUT", "/bkt/claims/abc", "s3")) is not None
    assert iam.authorize(principals["SplitFunction"], request(*ATTACH_POLICY)) is not None
    # Register detaches policies from certificates only, and deletes nothing but things and
    # certificates; the other functions delete nothing in IoT.
    detach_from_group = ("POST", "/target-policies/P", "iot", json.dumps({"target": f"{IOT}:thinggroup/G"}).encode())
    assert iam.authorize(principals["RegisterFunction"], request(*detach_from_group)) is not None
    assert iam.authorize(principals["RegisterFunction"], request("DELETE", "/thing-groups/G", "iot")) is not None
    assert iam.authorize(principals["RegisterFunction"], request("DELETE", "/policies/P", "iot")) is not None
    for who in ("SplitFunction", "DecorateFunction", "SummarizeFunction"):
        assert iam.authorize(principals[who], request("DELETE", "/things/t", "iot")) is not None, who
        assert iam.authorize(principals[who], request("DELETE", "/certificates/abc", "iot")) is not None, who
    assert iam.authorize(principals["ImportTriggerRule"], request("GET", "/bkt/runs/r/chunks.json", "s3")) is not None
    scan = request("POST", "/", "dynamodb", lease, **{"X-Amz-Target": "DynamoDB_20120810.Scan"})
    assert iam.authorize(principals["RegisterFunction"], scan) is not None
    assert iam.authorize(principals["SplitFunction"], request("POST", "/", "dynamodb", lease, **{"X-Amz-Target": "DynamoDB_20120810.Query"})) is not None


def test_the_templates_policies_lint_clean():
    st, principals = _template_principals()
    import stack

    problems = iam.lint(stack.iam_principals(st))
    assert problems == [], "\n".join(map(str, problems))
