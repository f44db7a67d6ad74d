"""Demo driver for script/demo: imports every real supplier sample through the deployed state
machine of the running local stack, with live progress, then prints the reports and the registry;
then imports everything again with force to show it all already registered."""

import json
import os
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("THINGPRESS_LOCAL_DIR") or ROOT / ".local")
SAMPLES = ROOT / "tests" / "fixtures" / "upstream"
# (label, file, expected certificates)
IMPORTS = [
    ("microchip", "ECC608C-TNGTLSU-B.json", 10),
    ("infineon", "manifest-infineon.7z", 200),
    ("espressif", "manifest-espressif.csv", 7),
    ("generated", "certificates_test.txt", 100),
]
PROFILE = "demo"


def clients(state):
    kw = {
        "endpoint_url": state["endpoint"],
        "region_name": state.get("region", "us-east-1"),
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "config": Config(retries={"mode": "standard", "max_attempts": 10}, s3={"addressing_style": "path"}),
    }
    return boto3.client("s3", **kw), boto3.client("stepfunctions", **kw), boto3.client("iot", **kw)


def finished_chunks(s3, bucket, run_id):
    """Chunk numbers whose results/NNNNN.jsonl exists (written once a chunk is complete)."""
    prefix = f"runs/{run_id}/results/"
    done = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            stem = obj["Key"][len(prefix):].split(".")[0]
            if stem.isdigit():
                done.add(int(stem))
    return done


def get_json(s3, bucket, key):
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def run_import(s3, sfn, state, label, key, expected, force):
    bucket = state["bucket"]
    machine = state["deployed"]["stateMachineArn"]
    run_id = f"demo-{label}-{'again' if force else 'first'}-{int(time.time())}"
    body = {"manifest": {"bucket": bucket, "key": key}, "profile": PROFILE, "force": force}
    arn = sfn.start_execution(stateMachineArn=machine, name=run_id, input=json.dumps(body))["executionArn"]
    started = time.time()
    chunks = None
    while True:
        desc = sfn.describe_execution(executionArn=arn)
        if chunks is None:
            chunks = get_json(s3, bucket, f"runs/{run_id}/chunks.json")
        done = finished_chunks(s3, bucket, run_id)
        if chunks is not None:
            entries = sum(c["entries"] for c in chunks)
            done_entries = sum(c["entries"] for c in chunks if c["chunk"] in done)
            progress = f"{len(done)}/{len(chunks)} chunks, {done_entries}/{entries} certificates"
        else:
            progress = "splitting"
        print(f"  {label}: {progress}, {time.time() - started:4.0f}s, {desc['status']}", flush=True)
        if desc["status"] != "RUNNING":
            break
        time.sleep(1)
    if desc["status"] != "SUCCEEDED":
        print(f"  {label}: FAILED {desc.get('error')}: {desc.get('cause')}")
        return False
    report = get_json(s3, bucket, f"runs/{run_id}/report.json")
    if report is None:
        print(f"  {label}: skipped: {desc.get('output')}")
        return False
    o = report["outcomes"]
    rejected = ", ".join(f"{k} {v}" for k, v in o.get("rejectedByError", {}).items()) or "none"
    print(
        f"  {label}: {report['status']}: {report['entries']} entries ({expected} expected), "
        f"registered {o['registered']}, already registered {o['alreadyRegistered']}, "
        f"rejected {o['rejected']} ({rejected}); {report['chunks']} chunks, "
        f"{report['durationSeconds']:.1f}s, {report['certificatesPerSecond']:.1f} certificates/s, "
        f"throttled {report['throttled']}, chunk retries {report['chunkRetries']}"
    )
    return report["status"] == "complete" and o["registered"] + o["alreadyRegistered"] == expected


def registry(iot):
    things = [t for p in iot.get_paginator("list_things").paginate() for t in p["things"]]
    by_type = {}
    for t in things:
        by_type[t.get("thingTypeName", "-")] = by_type.get(t.get("thingTypeName", "-"), 0) + 1
    certs = [c for p in iot.get_paginator("list_certificates").paginate() for c in p["certificates"]]
    by_status = {}
    for c in certs:
        by_status[c["status"]] = by_status.get(c["status"], 0) + 1
    print(f"  things: {len(things)} (by type: {by_type})")
    print(f"  certificates: {len(certs)} (by status: {by_status})")
    for group in ("demo-fleet", "demo-eu"):
        members = [
            n for p in iot.get_paginator("list_things_in_thing_group").paginate(thingGroupName=group) for n in p["things"]
        ]
        print(f"  thing group {group}: {len(members)} members")
    for policy in ("demo-connect", "demo-telemetry"):
        targets = [
            t for p in iot.get_paginator("list_targets_for_policy").paginate(policyName=policy) for t in p["targets"]
        ]
        print(f"  policy {policy}: attached to {len(targets)} certificates")


def main():
    state = json.loads((LOCAL / "stack.json").read_text())
    s3, sfn, iot = clients(state)
    bucket = state["bucket"]
    q = state.get("quotas", {})
    print(f"== stack {state['endpoint']}, IoT quotas (requests/s): {q}")
    ok = True
    for rnd, force in (("first import", False), ("second import (force: true)", True)):
        print(f"== {rnd}")
        for label, name, expected in IMPORTS:
            key = f"incoming/{PROFILE}/{name}"
            s3.put_object(Bucket=bucket, Key=key, Body=(SAMPLES / name).read_bytes())
            ok &= run_import(s3, sfn, state, label, key, expected, force)
        print("== registry")
        registry(iot)
    print("== demo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
