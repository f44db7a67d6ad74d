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


def test_substitutions_cover_the_real_definition():
    text = (stack.ROOT / "statemachine" / "import.asl.json").read_text()
    out = json.loads(stack.render_definition(text, stack.substitutions("my-bucket", "STANDARD")))
    rendered = json.dumps(out)
    assert "${" not in rendered
    assert stack.function_arn("register") in rendered
    assert '"ExecutionType": "STANDARD"' in rendered
    assert '"Bucket": "my-bucket"' in rendered


def test_unknown_substitution_is_an_error():
    with pytest.raises(stack.StackError, match="NewFunctionArn"):
        stack.render_definition('{"a": "${NewFunctionArn}"}', stack.substitutions("b", "STANDARD"))
    with pytest.raises(stack.StackError, match="not valid JSON"):
        stack.render_definition('{"a": ${ImportBucketName}}', stack.substitutions("b", "STANDARD"))


def test_function_env_quotas_follow_the_scale():
    args = stack.parser().parse_args(["up", "--quota-scale", "20", "--bucket", "bkt"])
    quotas = stack.effective_quotas(args)
    env = stack.function_env(args, 4566, quotas)
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["IMPORT_BUCKET"] == "bkt"
    assert env["QUOTA_REGISTER_CERTIFICATE_WITHOUT_CA"] == "200"
    assert env["QUOTA_ATTACH_POLICY"] == "300"
    assert env["QUOTA_CREATE_THING"] == "2000"
    assert set(stack.QUOTA_ENV.values()) <= set(env)


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
