"""Thingpress local stack: moto + edge + `cargo lambda watch`, all on 127.0.0.1.

Subcommands (run from anywhere; paths are relative to the repository root):
  up       start the three processes, wait until they answer, write .local/stack.json
  deploy   create the bucket, profiles, IoT thing types/groups/policies, the IAM role and the
           state machine from statemachine/import.asl.json (local substitutions), and point the
           edge's S3 trigger (uploads under incoming/ start the state machine) at them
  status   print the state file and whether each process is alive
  env      print `export` lines for AWS_ENDPOINT_URL, credentials, region, ARN, bucket
  down     stop everything (idempotent; also cleans up after a stale state file)

Logs go to .local/logs/. Every child runs in its own process group so that `down` (and a
failed `up`) also ends what it spawned (cargo builds, function processes).
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# THINGPRESS_LOCAL_DIR lets tests run a stack with its own state and logs.
LOCAL = Path(os.environ.get("THINGPRESS_LOCAL_DIR") or ROOT / ".local").resolve()
STATE_FILE = LOCAL / "stack.json"
LOG_DIR = LOCAL / "logs"
HERE = Path(__file__).resolve().parent

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
FUNCTIONS = ("split", "decorate", "register", "summarize")
DEFAULT_BUCKET = "thingpress-local"
DEFAULT_STATE_MACHINE = "thingpress-import"
SFN_ROLE = "thingpress-local-states"
# Uploads under this prefix of the bucket start imports (DESIGN.md §7, the stack's EventBridge rule).
TRIGGER_PREFIX = "incoming/"

# Lambda environment variable per IoT API (the contract in notes/contract-lambdas.md).
QUOTA_ENV = {
    "RegisterCertificateWithoutCA": "QUOTA_REGISTER_CERTIFICATE_WITHOUT_CA",
    "CreateThing": "QUOTA_CREATE_THING",
    "AttachThingPrincipal": "QUOTA_ATTACH_THING_PRINCIPAL",
    "AttachPolicy": "QUOTA_ATTACH_POLICY",
    "AddThingToThingGroup": "QUOTA_ADD_THING_TO_THING_GROUP",
    "DescribeCertificate": "QUOTA_DESCRIBE_CERTIFICATE",
}

DEFAULT_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:client/${{iot:Connection.Thing.ThingName}}",
        }
    ],
}

DEFAULT_RESOURCES: dict[str, Any] = {
    "thingTypes": ["thingpress-device"],
    "thingGroups": ["thingpress-devices"],
    "policies": {"thingpress-device": DEFAULT_POLICY},
    "profiles": {
        "default": {
            "name": "default",
            "supplier": "auto",
            "thingName": "{deviceId}",
            "thingType": "thingpress-device",
            "thingGroups": ["thingpress-devices"],
            "policies": ["thingpress-device"],
            "certificateStatus": "ACTIVE",
        }
    },
}


class StackError(Exception):
    """A failure of a stack command, with a message meant for the user."""


# ---------------------------------------------------------------- helpers


def log(msg: str) -> None:
    """Progress on stderr, so `env` output on stdout stays clean."""
    print(f"[local] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A currently free loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_post_json(url: str, body: Any, timeout: float = 10.0) -> tuple[int, bytes]:
    """POST a JSON body returning (status, body); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET returning (status, body); HTTP errors are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def read_state() -> dict[str, Any] | None:
    """The state file, or None if there is none (or it is unreadable)."""
    try:
        return json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        log(f"ignoring unreadable {STATE_FILE}: {e}")
        return None


def write_state(state: dict[str, Any]) -> None:
    """Write the state file atomically."""
    LOCAL.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(STATE_FILE)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- processes


def _set_pdeathsig() -> None:
    # Foreground mode: the kernel kills the child if stack.py dies, even by SIGKILL.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(name: str, cmd: list[str], env: dict[str, str], foreground: bool, cwd: Path = ROOT) -> dict[str, Any]:
    """Start one child in a new session (its own process group), logging to .local/logs/<name>.log."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    logfile = LOG_DIR / f"{name}.log"
    with open(logfile, "ab") as out:
        out.write(f"\n==== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_set_pdeathsig if foreground else None,
        )
    return {"pid": proc.pid, "cmd": cmd, "log": str(logfile), "proc": proc}


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, pgrp, session) for every visible process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the ")" that ends the command name: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 4:
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[3]))
    return table


def _group_members(pgid: int) -> list[int]:
    """Processes whose process group and session are pgid (start_new_session made pgid = leader pid)."""
    return [pid for pid, (_, pgrp, sid) in _proc_table().items() if pgrp == pgid and sid == pgid]


def _tree(root: int) -> set[int]:
    """root's group plus every descendant, whatever its session: cargo lambda watch starts each
    function instance in a session of its own, so killing the group alone would orphan them."""
    table = _proc_table()
    found = {pid for pid, (_, pgrp, sid) in table.items() if pgrp == root and sid == root}
    if root in table:
        found.add(root)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def is_ours(info: dict[str, Any]) -> bool:
    """Whether the recorded process (or its group) still exists and is what we started."""
    pid = int(info.get("pid", 0))
    cmd = info.get("cmd") or []
    if pid <= 0 or not cmd:
        return False
    cmdline = _proc_cmdline(pid)
    if cmdline is not None:
        # A recycled pid runs something else: never signal it. argv[0] may be rewritten.
        return len(cmdline) >= len(cmd) and cmdline[len(cmdline) - len(cmd) + 1 :] == cmd[1:]
    # Leader gone but members of its group (function processes, cargo) may remain.
    return bool(_group_members(pid))


def stop(name: str, info: dict[str, Any], grace: float = 8.0) -> None:
    """SIGTERM the child's process tree, then SIGKILL what is left after `grace` seconds."""
    pid = int(info.get("pid", 0))
    if pid <= 0 or not is_ours(info):
        return
    log(f"stopping {name} (pid {pid})")
    procs = _tree(pid)
    # The leader first: cargo lambda watch ends its function instances itself on SIGTERM.
    _signal_all([pid], signal.SIGTERM)
    _signal_all(procs - {pid}, signal.SIGTERM)
    proc = info.get("proc")
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        procs = {p for p in procs | _tree(pid) if Path(f"/proc/{p}").exists() and not _zombie(p)}
        if not procs:
            break
        time.sleep(0.1)
    else:
        log(f"{name}: killing {len(procs)} process(es) that ignored SIGTERM")
        _signal_all(procs, signal.SIGKILL)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def orphaned_functions(functions_dir: Path) -> list[int]:
    """Function instances of this workspace whose cargo lambda watch is gone (it was SIGKILLed):
    their binary is <functions_dir>/target/*/<function> and no cargo-lambda is their parent."""
    targets = {str((functions_dir / "target" / profile / f).resolve()) for profile in ("debug", "release") for f in FUNCTIONS}
    found = []
    table = _proc_table()
    for pid, (ppid, _, _) in table.items():
        try:
            exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        except OSError:
            continue
        if exe not in targets:
            continue
        parent = _proc_cmdline(ppid) or []
        if not any(Path(a).name == "cargo-lambda" for a in parent[:1]):
            found.append(pid)
    return found


def _signal_all(pids, sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def wait_healthy(name: str, info: dict[str, Any], check, timeout: float) -> None:
    """Poll `check()` until true; fail early if the child exits, with its log tail."""
    deadline = time.monotonic() + timeout
    proc: subprocess.Popen[bytes] = info["proc"]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with {proc.returncode}; log {info['log']}:\n{tail(Path(info['log']))}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise StackError(f"{name} not healthy after {timeout:.0f}s; log {info['log']}:\n{tail(Path(info['log']))}")


# ---------------------------------------------------------------- up / down


def venv_bin(name: str) -> str:
    """A tool from the interpreter's own venv (script/local runs us from .venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def function_env(args: argparse.Namespace, edge_port: int, quotas: dict[str, float]) -> dict[str, str]:
    """The environment every local Lambda function gets (the Lambda contract, local flavour)."""
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{edge_port}",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **CREDENTIALS,
        "AWS_EC2_METADATA_DISABLED": "true",
        "IMPORT_BUCKET": args.bucket,
        "DEFAULT_MAX_CONCURRENCY": str(args.max_concurrency),
        "DEFAULT_CHUNK_SIZE": str(args.chunk_size),
        "QUOTA_SAFETY_FACTOR": str(args.safety_factor),
        "RUST_LOG": args.rust_log,
    }
    for op, var in QUOTA_ENV.items():
        if op in quotas:
            env[var] = f"{quotas[op]:g}"
    return env


def effective_quotas(args: argparse.Namespace) -> dict[str, float]:
    """Per-API rates the edge enforces (and the functions pace for)."""
    sys.path.insert(0, str(HERE))
    import edge  # noqa: PLC0415 - local module, imported late on purpose

    cfg = edge.QuotaConfig()
    if args.quotas:
        cfg = cfg.merged(edge._json_arg(args.quotas, "quotas"))
    cfg = cfg.merged({"scale": args.quota_scale})
    return {op: r * cfg.scale for op, r in cfg.rates.items()}


def cmd_up(args: argparse.Namespace) -> int:
    """Start moto, the edge and cargo lambda watch; write the state file."""
    old = read_state()
    if old is not None:
        alive = [n for n, p in old.get("processes", {}).items() if is_ours(p)]
        if alive:
            raise StackError(f"a stack is already running ({', '.join(alive)}); run `script/local down` first")
        log("removing stale state file")
        STATE_FILE.unlink(missing_ok=True)

    ports = {
        "edge": args.edge_port or free_port(),
        "moto": args.moto_port or free_port(),
        "lambda": args.lambda_port or free_port(),
    }
    if len(set(ports.values())) != 3:
        raise StackError(f"ports must differ: {ports}")
    for name, port in ports.items():
        if port_open(port):
            raise StackError(f"port {port} for {name} is already in use")

    if not (Path(args.functions_dir) / "Cargo.toml").is_file():
        raise StackError(f"--functions-dir {args.functions_dir} has no Cargo.toml")
    quotas = effective_quotas(args)
    fenv = function_env(args, ports["edge"], quotas)
    LOCAL.mkdir(parents=True, exist_ok=True)
    env_file = LOCAL / "functions.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in fenv.items()))

    if not args.no_build:
        # cargo lambda watch starts each function with `cargo run --bin <name>` on its first
        # invoke; building each the same way now (same per-package feature set, so the same
        # artifacts) keeps that first Step Functions task from waiting for a cold compile.
        for function in FUNCTIONS:
            cmd = ["cargo", "build", "--bin", function]
            log(f"building: {' '.join(cmd)}")
            if subprocess.run(cmd, cwd=args.functions_dir).returncode != 0:
                raise StackError(f"`{' '.join(cmd)}` failed in {args.functions_dir}")

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    children: dict[str, dict[str, Any]] = {}

    def cleanup() -> None:
        for name in reversed(list(children)):
            stop(name, children[name])
        children.clear()

    def on_signal(signum: int, _frame: Any) -> None:
        cleanup()
        raise SystemExit(128 + signum)

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    py = sys.executable
    try:
        children["moto"] = spawn(
            "moto",
            [py, str(HERE / "moto_server.py"), "--port", str(ports["moto"]), "--edge-port", str(ports["edge"])],
            base_env,
            args.foreground,
        )
        edge_cmd = [
            py,
            str(HERE / "edge.py"),
            "--port",
            str(ports["edge"]),
            "--moto-url",
            f"http://127.0.0.1:{ports['moto']}",
            "--lambda-url",
            f"http://127.0.0.1:{ports['lambda']}",
            "--quota-scale",
            f"{args.quota_scale:g}",
        ]
        if args.quotas:
            edge_cmd += ["--quotas", args.quotas]
        if args.no_quotas:
            edge_cmd.append("--no-quotas")
        if args.faults:
            edge_cmd += ["--faults", args.faults]
        if args.seed is not None:
            edge_cmd += ["--seed", str(args.seed)]
        children["edge"] = spawn("edge", edge_cmd, base_env, args.foreground)
        watch_cmd = [
            venv_bin("cargo-lambda"),
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            str(ports["lambda"]),
            "--concurrency",
            str(args.lambda_concurrency),
            # AWS Lambda's own maximum; the edge waits as long (Upstream timeout 960 s).
            "--timeout",
            "900",
            "--env-file",
            str(env_file),
        ]
        if not args.reload:
            watch_cmd.append("--ignore-changes")
        children["lambda"] = spawn("lambda", watch_cmd, {**base_env, **fenv}, args.foreground, cwd=args.functions_dir)

        wait_healthy("moto", children["moto"], lambda: http_get(f"http://127.0.0.1:{ports['moto']}/moto-api/")[0] < 500, 60)
        wait_healthy(
            "edge", children["edge"], lambda: http_get(f"http://127.0.0.1:{ports['edge']}/_edge/health")[0] == 200, 30
        )
        wait_healthy("lambda", children["lambda"], lambda: port_open(ports["lambda"]), 120)
    except BaseException:
        cleanup()
        raise

    state = {
        "version": 1,
        "root": str(ROOT),
        "endpoint": f"http://127.0.0.1:{ports['edge']}",
        "region": REGION,
        "accountId": ACCOUNT_ID,
        "bucket": args.bucket,
        "ports": ports,
        "quotas": quotas,
        "quotaScale": args.quota_scale,
        "quotasEnabled": not args.no_quotas,
        "functions": {f: function_arn(f) for f in FUNCTIONS},
        "functionsDir": str(Path(args.functions_dir).resolve()),
        "functionEnv": fenv,
        "processes": {n: {k: v for k, v in c.items() if k != "proc"} for n, c in children.items()},
        "startedAt": time.time(),
    }
    write_state(state)
    log(f"up: endpoint {state['endpoint']} (moto :{ports['moto']}, cargo lambda watch :{ports['lambda']})")
    if not args.foreground:
        # Detached: the children outlive us; `down` ends them.
        atexit.unregister(cleanup)
        children.clear()
        return 0
    log("foreground: Ctrl-C stops the stack")
    try:
        while all(c["proc"].poll() is None for c in children.values()):
            time.sleep(0.5)
        dead = [n for n, c in children.items() if c["proc"].returncode is not None]
        raise StackError(f"{', '.join(dead)} exited; see .local/logs/")
    finally:
        cleanup()
        STATE_FILE.unlink(missing_ok=True)


def cmd_down(_args: argparse.Namespace) -> int:
    """Stop every recorded process group; remove the state file. Idempotent."""
    state = read_state()
    if state is None:
        log("nothing to stop (no .local/stack.json)")
        return 0
    procs = state.get("processes", {})
    for name in ("lambda", "edge", "moto"):
        if name in procs:
            stop(name, procs[name])
    orphans = orphaned_functions(Path(state.get("functionsDir") or ROOT))
    if orphans:
        log(f"stopping {len(orphans)} orphaned function instance(s)")
        _signal_all(orphans, signal.SIGTERM)
        time.sleep(1)
        _signal_all([p for p in orphans if Path(f"/proc/{p}").exists()], signal.SIGKILL)
    STATE_FILE.unlink(missing_ok=True)
    log("down")
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    """Print the state with liveness; exit 1 if any process is gone."""
    state = read_state()
    if state is None:
        print(json.dumps({"running": False}))
        return 1
    alive = {n: is_ours(p) for n, p in state.get("processes", {}).items()}
    health = None
    try:
        health = http_get(f"{state['endpoint']}/_edge/health")[0] == 200
    except OSError:
        health = False
    out = {
        "running": all(alive.values()) and health,
        "alive": alive,
        "edgeHealthy": health,
        **{k: state.get(k) for k in ("endpoint", "ports", "bucket", "quotas", "deployed")},
    }
    print(json.dumps(out, indent=2))
    return 0 if out["running"] else 1


def cmd_env(_args: argparse.Namespace) -> int:
    """Print export lines for a shell (eval "$(script/local env)")."""
    state = require_state()
    lines = {
        "AWS_ENDPOINT_URL": state["endpoint"],
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **CREDENTIALS,
        "AWS_EC2_METADATA_DISABLED": "true",
        "THINGPRESS_BUCKET": state["bucket"],
        "THINGPRESS_EDGE_URL": state["endpoint"],
    }
    arn = (state.get("deployed") or {}).get("stateMachineArn")
    if arn:
        lines["THINGPRESS_STATE_MACHINE_ARN"] = arn
    for k, v in lines.items():
        print(f"export {k}={_shell_quote(v)}")
    return 0


def _shell_quote(v: str) -> str:
    return "'" + str(v).replace("'", "'\"'\"'") + "'"


def require_state() -> dict[str, Any]:
    """The state of a running stack, or a clear error."""
    state = read_state()
    if state is None:
        raise StackError("no local stack: run `script/local up` first")
    return state


# ---------------------------------------------------------------- deploy


def function_arn(name: str) -> str:
    """The ARN the ASL names for a local function; the edge maps it back to the bare name."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def substitutions(bucket: str, child_execution_type: str) -> dict[str, str]:
    """DefinitionSubstitutions for the local stack (SAM fills the same names on AWS)."""
    subs = {f"{f.capitalize()}FunctionArn": function_arn(f) for f in FUNCTIONS}
    subs["ImportBucketName"] = bucket
    subs["ChildExecutionType"] = child_execution_type
    return subs


def render_definition(text: str, subs: dict[str, str]) -> str:
    """Replace ${Name}; any name left unreplaced is an error (the ASL and this list drifted)."""
    import re

    missing = sorted(set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text)) - set(subs))
    if missing:
        raise StackError(f"statemachine definition uses substitutions the local stack does not know: {missing}")
    out = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: subs[m.group(1)], text)
    try:
        json.loads(out)
    except ValueError as e:
        raise StackError(f"statemachine definition is not valid JSON after substitution: {e}") from None
    return out


def clients(state: dict[str, Any]):
    """boto3 clients against the edge."""
    import boto3
    from botocore.config import Config

    kw = {
        "endpoint_url": state["endpoint"],
        "region_name": REGION,
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        # Deploy must not trip the edge's IoT quotas; standard retries absorb a throttle.
        "config": Config(retries={"mode": "standard", "max_attempts": 10}),
    }
    return {name: boto3.client(name, **kw) for name in ("s3", "iot", "iam", "stepfunctions")}


def _ignore_exists(fn, *exists_codes: str) -> bool:
    """Run a create call; True if created, False if it already existed."""
    from botocore.exceptions import ClientError

    try:
        fn()
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in exists_codes:
            return False
        raise


def load_resources(path: str | None) -> dict[str, Any]:
    """Resources to deploy: the defaults, or a JSON file of the same shape."""
    if not path:
        return json.loads(json.dumps(DEFAULT_RESOURCES))
    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise StackError(f"resources file {path}: {e}") from None
    unknown = set(res) - {"thingTypes", "thingGroups", "policies", "profiles"}
    if unknown:
        raise StackError(f"resources file {path}: unknown keys {sorted(unknown)}")
    return res


def cmd_deploy(args: argparse.Namespace) -> int:
    """Create (or update) everything a run needs; idempotent."""
    state = require_state()
    bucket = state["bucket"]
    res = load_resources(args.resources)
    for name in args.thing_type or []:
        res.setdefault("thingTypes", []).append(name)
    for name in args.thing_group or []:
        res.setdefault("thingGroups", []).append(name)
    for name in args.policy or []:
        res.setdefault("policies", {})[name] = DEFAULT_POLICY
    for path in args.profile or []:
        try:
            prof = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise StackError(f"profile {path}: {e}") from None
        res.setdefault("profiles", {})[prof.get("name") or Path(path).stem] = prof

    c = clients(state)
    _ignore_exists(lambda: c["s3"].create_bucket(Bucket=bucket), "BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    for name, prof in (res.get("profiles") or {}).items():
        c["s3"].put_object(
            Bucket=bucket,
            Key=f"profiles/{name}.json",
            Body=json.dumps(prof, indent=2).encode(),
            ContentType="application/json",
        )
    for name in res.get("thingTypes") or []:
        _ignore_exists(lambda n=name: c["iot"].create_thing_type(thingTypeName=n), "ResourceAlreadyExistsException")
    for name in res.get("thingGroups") or []:
        _ignore_exists(lambda n=name: c["iot"].create_thing_group(thingGroupName=n), "ResourceAlreadyExistsException")
    for name, doc in (res.get("policies") or {}).items():
        _ignore_exists(
            lambda n=name, d=doc: c["iot"].create_policy(policyName=n, policyDocument=json.dumps(d)),
            "ResourceAlreadyExistsException",
        )

    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    _ignore_exists(
        lambda: c["iam"].create_role(RoleName=SFN_ROLE, AssumeRolePolicyDocument=json.dumps(trust)), "EntityAlreadyExists"
    )
    role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{SFN_ROLE}"

    asl_path = Path(args.definition) if args.definition else ROOT / "statemachine" / "import.asl.json"
    try:
        text = asl_path.read_text()
    except OSError as e:
        raise StackError(f"state machine definition {asl_path}: {e}") from None
    definition = render_definition(text, substitutions(bucket, args.child_execution_type))
    sm_name = args.state_machine_name
    arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{sm_name}"
    _ignore_exists(
        lambda: c["stepfunctions"].create_state_machine(
            name=sm_name, definition=definition, roleArn=role_arn, type="STANDARD"
        ),
        "StateMachineAlreadyExists",
    )
    # moto's CreateStateMachine returns an existing machine unchanged, whatever the definition:
    # update always, so a re-deploy loads the current ASL.
    c["stepfunctions"].update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)

    # The stack's EventBridge rule (infra/template.yaml ImportTriggerRule), emulated by the edge.
    rules = [] if args.no_trigger else [{"bucket": bucket, "prefix": TRIGGER_PREFIX, "stateMachineArn": arn}]
    try:
        status, answer = http_post_json(f"{state['endpoint']}/_edge/triggers", {"rules": rules})
    except OSError as e:
        raise StackError(f"cannot configure the edge's S3 trigger at {state['endpoint']}: {e}") from None
    if status == 404:
        # An edge started before the trigger existed: deploy still works, uploads start nothing.
        log("the running edge has no S3 trigger (it predates it): restart the stack for uploads to start imports")
        rules = []
    elif status != 200:
        raise StackError(f"the edge refused the S3 trigger: HTTP {status} {answer[:300].decode(errors='replace')}")

    state = read_state() or state
    state["deployed"] = {
        "stateMachineArn": arn,
        "definition": str(asl_path),
        "childExecutionType": args.child_execution_type,
        "roleArn": role_arn,
        "thingTypes": res.get("thingTypes") or [],
        "thingGroups": res.get("thingGroups") or [],
        "policies": sorted(res.get("policies") or {}),
        "profiles": sorted(res.get("profiles") or {}),
        "triggers": rules,
        "at": time.time(),
    }
    write_state(state)
    log(f"deployed {arn} with bucket {bucket}")
    print(json.dumps(state["deployed"], indent=2))
    return 0


# ---------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="script/local", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start moto, the edge and cargo lambda watch")
    up.add_argument("--edge-port", type=int, default=int(os.environ.get("THINGPRESS_EDGE_PORT", 0)))
    up.add_argument("--moto-port", type=int, default=0)
    up.add_argument("--lambda-port", type=int, default=0)
    up.add_argument("--bucket", default=DEFAULT_BUCKET)
    up.add_argument("--quota-scale", type=float, default=1.0, help="multiply AWS's default IoT quotas")
    up.add_argument("--quotas", help="edge quota JSON (inline or file)")
    up.add_argument("--no-quotas", action="store_true", help="the edge enforces no IoT rate limits")
    up.add_argument("--faults", help="edge fault JSON (inline or file)")
    up.add_argument("--seed", type=int, help="seed for the edge's fault injection")
    up.add_argument("--max-concurrency", type=int, default=4, help="DEFAULT_MAX_CONCURRENCY for Split")
    up.add_argument("--chunk-size", type=int, default=500, help="DEFAULT_CHUNK_SIZE for Split")
    up.add_argument("--safety-factor", type=float, default=0.9, help="QUOTA_SAFETY_FACTOR")
    up.add_argument("--lambda-concurrency", type=int, default=8, help="instances per function in cargo lambda watch")
    up.add_argument("--rust-log", default=os.environ.get("RUST_LOG", "info"))
    up.add_argument("--reload", action="store_true", help="let cargo lambda watch rebuild on source changes")
    up.add_argument("--no-build", action="store_true", help="skip the up-front cargo build of the functions")
    up.add_argument(
        "--functions-dir", type=Path, default=ROOT, help="Cargo workspace whose binaries cargo lambda watch serves"
    )
    up.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops everything")
    up.set_defaults(func=cmd_up)

    dp = sub.add_parser("deploy", help="create bucket, profiles, IoT resources and the state machine")
    dp.add_argument("--definition", help="ASL file (default statemachine/import.asl.json)")
    dp.add_argument("--state-machine-name", default=DEFAULT_STATE_MACHINE)
    dp.add_argument("--child-execution-type", default="STANDARD", choices=["STANDARD", "EXPRESS"])
    dp.add_argument("--resources", help="JSON {thingTypes[], thingGroups[], policies{name: doc}, profiles{name: {...}}}")
    dp.add_argument("--thing-type", action="append", help="extra thing type (repeatable)")
    dp.add_argument("--thing-group", action="append", help="extra thing group (repeatable)")
    dp.add_argument("--policy", action="append", help="extra IoT policy with the default document (repeatable)")
    dp.add_argument("--profile", action="append", help="profile JSON file to store as profiles/<name>.json (repeatable)")
    dp.add_argument(
        "--no-trigger", action="store_true", help="uploads under incoming/ start nothing (the edge's trigger rule is removed)"
    )
    dp.set_defaults(func=cmd_deploy)

    for name, fn, text in (
        ("down", cmd_down, "stop everything"),
        ("status", cmd_status, "show the stack"),
        ("env", cmd_env, "print export lines"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.set_defaults(func=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; StackError becomes a one-line message and exit 1."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StackError as e:
        print(f"[local] error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
