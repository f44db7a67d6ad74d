"""Tests of the edge's Lambda routing and limits: each deployed function goes to its own watcher
under its cargo binary, within the template's timeout and Lambda's 6 MB payload limits.

Run: .venv/bin/python -m pytest local/test_edge_lambda.py -q   (no moto or cargo needed)
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edge  # noqa: E402

ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


class _Watcher(BaseHTTPRequestHandler):
    """A stand-in for one `cargo lambda watch`: records the paths it is asked for."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, str]] = []

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.server.server_address[1], self.path))
        binary = self.path.split("/")[3]
        if binary == "slow":
            time.sleep(1.5)
        out = b'"' + b"x" * (edge.LAMBDA_RESPONSE_LIMIT + 1) + b'"' if binary == "big" else json.dumps({"echo": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        try:
            self.wfile.write(out)
        except OSError:
            pass  # the edge gave up waiting


def _serve(server):
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture()
def routed():
    watchers = [_serve(ThreadingHTTPServer(("127.0.0.1", 0), _Watcher)) for _ in range(2)]
    for w in watchers:
        w.daemon_threads = True
    _Watcher.seen = []
    a, b = (f"http://127.0.0.1:{w.server_address[1]}" for w in watchers)
    state = edge.EdgeState(rng=random.Random(1))
    state.set_functions(
        {
            "functions": {
                "thingpress-split": {"url": a, "binary": "split", "timeout": 5},
                "thingpress-slow": {"url": b, "binary": "slow", "timeout": 0.5},
                "thingpress-big": {"url": b, "binary": "big", "timeout": 5},
            }
        }
    )
    # No default watcher: a function the template does not deploy does not exist.
    server = _serve(edge.EdgeServer(("127.0.0.1", 0), state, a, None))
    yield f"http://127.0.0.1:{server.server_address[1]}", state, [w.server_address[1] for w in watchers]
    for s in (server, *watchers):
        s.shutdown()
        s.server_close()


def _invoke(url, name, body: bytes):
    req = urllib.request.Request(f"{url}/2015-03-31/functions/{urllib.parse.quote(name, safe='')}/invocations", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_each_function_goes_to_its_own_watcher_under_its_binary(routed):
    url, state, (port_a, port_b) = routed
    status, _, body = _invoke(url, ARN + "thingpress-split", b'{"a": 1}')
    assert status == 200 and json.loads(body) == {"echo": {"a": 1}}
    assert _Watcher.seen == [(port_a, "/2015-03-31/functions/split/invocations")]
    ops = state.snapshot()["operations"]
    assert ops["Lambda.Invoke:split"]["passed"] == 1


def test_a_function_the_stack_does_not_deploy_is_not_found(routed):
    url, _, _ = routed
    status, headers, body = _invoke(url, ARN + "split", b"{}")
    assert status == 404 and headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert _Watcher.seen == []


def test_no_answer_within_the_timeout_is_sandbox_timedout(routed):
    url, state, _ = routed
    started = time.monotonic()
    status, headers, body = _invoke(url, ARN + "thingpress-slow", b"{}")
    assert time.monotonic() - started < 1.4
    assert status == 200 and headers["X-Amz-Function-Error"] == "Unhandled"
    err = json.loads(body)
    assert err["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 0.50 seconds" in err["errorMessage"]
    assert state.snapshot()["operations"]["Lambda.Invoke:slow"]["lambdaTimeouts"] == 1


def test_request_over_6_mb_is_refused_before_the_function_runs(routed):
    url, _, _ = routed
    body = b'"' + b"x" * (edge.LAMBDA_REQUEST_LIMIT - 1) + b'"'
    status, headers, answer = _invoke(url, ARN + "thingpress-split", body)
    assert status == 413 and headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"
    assert "6291456 bytes" in json.loads(answer)["message"]
    assert _Watcher.seen == []
    # Exactly at the limit still runs.
    status, _, _ = _invoke(url, ARN + "thingpress-split", b'"' + b"x" * (edge.LAMBDA_REQUEST_LIMIT - 2) + b'"')
    assert status == 200


def test_answer_over_6_mb_is_a_function_error(routed):
    url, _, _ = routed
    status, headers, body = _invoke(url, ARN + "thingpress-big", b"{}")
    assert status == 200 and headers["X-Amz-Function-Error"] == "Unhandled"
    err = json.loads(body)
    assert err["errorType"] == "Function.ResponseSizeTooLarge"
    assert f"({edge.LAMBDA_RESPONSE_LIMIT} bytes)" in err["errorMessage"]


def test_function_routes_are_in_the_config_and_reject_nonsense():
    state = edge.EdgeState()
    out = state.set_functions({"functions": {"f": {"url": "http://127.0.0.1:9", "binary": "split", "timeout": 900}}})
    assert out == {"f": {"url": "http://127.0.0.1:9", "binary": "split", "timeout": 900.0}}
    assert state.config()["functions"] == out
    for bad in (
        {"functions": []},
        {"functions": {"f": {"url": "ftp://x", "binary": "split", "timeout": 1}}},
        {"functions": {"f": {"url": "http://127.0.0.1:9", "binary": "", "timeout": 1}}},
        {"functions": {"f": {"url": "http://127.0.0.1:9", "binary": "split", "timeout": 0}}},
        {"functions": {"f": {"url": "http://127.0.0.1:9", "binary": "split", "timeout": 1, "x": 1}}},
        {"other": {}},
    ):
        with pytest.raises(ValueError):
            state.set_functions(bad)
