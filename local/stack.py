"""Thingpress local stack: moto + edge + one `cargo lambda watch` per function, on 127.0.0.1,
deployed from infra/template.yaml (local/template.py translates and resolves it).

Subcommands (run from anywhere; paths are relative to the repository root):
  up       start moto, the edge and each function's watcher (environment, timeout and memory
           from the template), wait until they answer, write .local/stack.json
  deploy   create what the template declares that moto can hold: the bucket with its
           versioning, encryption and lifecycle, the DynamoDB tables with their keys and TTL
           attribute, the IAM roles with their inline policies, the
           state machine from its DefinitionUri with its DefinitionSubstitutions; point the
           edge's S3 trigger at it from the template's EventPattern and give the edge each
           role's statements to authorize calls with; plus profiles and IoT thing types,
           groups and policies for the runs
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import iam  # noqa: E402 - local module next to this file
import template  # noqa: E402 - local module next to this file

ROOT = Path(__file__).resolve().parent.parent
# THINGPRESS_LOCAL_DIR lets tests run a stack with its own state and logs.
LOCAL = Path(os.environ.get("THINGPRESS_LOCAL_DIR") or ROOT / ".local").resolve()
STATE_FILE = LOCAL / "stack.json"
LOG_DIR = LOCAL / "logs"
DEFAULT_TEMPLATE = ROOT / "infra" / "template.yaml"
OPERATOR_POLICY = ROOT / "infra" / "operator-policy.json"

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# What `sam deploy --stack-name` would be; the template derives function and state machine names from it.
DEFAULT_STACK_NAME = "thingpress"
# CloudFormation would generate the bucket's name; locally it is this (or --bucket).
DEFAULT_BUCKET = "thingpress-local"
# Deploy tooling and `env` use these; the edge restricts only the principals deploy gives it.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
PRINCIPAL_SECRET = "test"
OPERATOR_KEY = "Operator"  # local/iam.py's OPERATOR_KEY (checked by test_stack)
# cargo lambda watch's own --timeout (see cmd_up); a function's timeout is the edge's to enforce.
WATCHER_TIMEOUT_S = 86400

# The template's allow-list defaults to thingpress-* (a deployed stack must not let whoever
# writes profiles/ attach any IoT policy); moto holds nothing to protect, and tests and the demo
# name their own policies and groups, so the local stack allows every name unless --parameter
# says otherwise.
# TargetRegions: the Regions of the stack's account that the end-to-end tests and the demo name
# as profile targets besides us-east-1 (the template's default is none: the edge then denies IoT
# in any other Region, as the functions' OnlyTargetRegions Deny does on AWS).
LOCAL_PARAMETERS = {"AllowedPolicies": "*", "AllowedThingGroups": "*", "TargetRegions": "eu-west-1"}

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


def orphaned_functions(functions_dir: Path, binaries: list[str]) -> list[int]:
    """Function instances of this workspace whose cargo lambda watch is gone (it was SIGKILLed):
    their binary is <functions_dir>/target/*/<binary> and no cargo-lambda is their parent."""
    targets = {str((functions_dir / "target" / profile / b).resolve()) for profile in ("debug", "release") for b in binaries}
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


# ---------------------------------------------------------------- template


def venv_bin(name: str) -> str:
    """A tool from the interpreter's own venv (script/local runs us from .venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def parameter_overrides(args: argparse.Namespace, template_path: Path) -> dict[str, str]:
    """Template parameter values from the options: --parameter K=V, the shorthands, and the
    quota scale applied to the template's Quota* rate defaults, over LOCAL_PARAMETERS."""
    out: dict[str, str] = dict(LOCAL_PARAMETERS)
    try:
        rates = template.quota_rate_defaults(template_path)
    except template.TemplateError as e:
        raise StackError(str(e)) from None
    if args.quota_scale != 1.0:
        for operation, rate in rates.items():
            out[f"Quota{operation}"] = f"{rate * args.quota_scale:g}"
    for flag, name in (
        ("chunk_size", "ChunkSize"),
        ("max_concurrency", "MaxConcurrency"),
        ("reserve", "QuotaReserve"),
        ("rust_log", "LogLevel"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            out[name] = f"{value:g}" if isinstance(value, float) else str(value)
    for item in args.parameter or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise StackError(f"--parameter {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def load_stack(template_path: Path, overrides: dict[str, str], stack_name: str, bucket: str) -> template.Stack:
    """The template resolved for the local account, region, stack name and bucket name."""
    try:
        return template.load(
            template_path,
            overrides,
            region=REGION,
            account_id=ACCOUNT_ID,
            stack_name=stack_name,
            physical_names={_bucket_logical_id(template_path): bucket},
        )
    except template.TemplateError as e:
        raise StackError(f"{template_path}: {e}") from None


def _bucket_logical_id(template_path: Path) -> str:
    """The logical id of the template's bucket (it gets the local bucket name)."""
    from samtranslator.yaml_helper import yaml_parse

    try:
        raw = yaml_parse(template_path.read_text())
    except (OSError, ValueError) as e:
        raise StackError(f"{template_path}: {e}") from None
    ids = [k for k, v in (raw.get("Resources") or {}).items() if isinstance(v, dict) and v.get("Type") == "AWS::S3::Bucket"]
    return ids[0] if len(ids) == 1 else ""


def function_env(function: template.Function, edge_port: int) -> dict[str, str]:
    """A function's environment: the template's (Globals + its own, resolved), plus only what
    running outside Lambda needs: the edge as endpoint, region, and credentials whose access
    key id names the function, so the edge authorizes its calls against the function's role."""
    return {
        **function.environment,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{edge_port}",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": function.logical_id,
        "AWS_SECRET_ACCESS_KEY": PRINCIPAL_SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
    }


def common_env(envs: list[dict[str, str]]) -> dict[str, str]:
    """The variables every function has with the same value (stack.json's functionEnv)."""
    if not envs:
        return {}
    return {k: v for k, v in envs[0].items() if all(e.get(k) == v for e in envs[1:])}


def effective_quotas(args: argparse.Namespace, template_path: Path) -> dict[str, float]:
    """Per-API rates the edge enforces: AWS's account quotas (the template's Quota* defaults,
    scaled), not the values the stack's parameters give Register."""
    import edge  # noqa: PLC0415 - local module, imported late on purpose

    try:
        edge.use_template(template_path)
    except ValueError as e:
        raise StackError(str(e)) from None
    cfg = edge.QuotaConfig()
    if args.quotas:
        cfg = cfg.merged(edge._json_arg(args.quotas, "quotas"))
    cfg = cfg.merged({"scale": args.quota_scale})
    return {op: r * cfg.scale for op, r in cfg.rates.items()}


# ---------------------------------------------------------------- up / down


def cmd_up(args: argparse.Namespace) -> int:
    """Start moto, the edge and one cargo lambda watch per function; write the state file."""
    clear_stale_state()
    template_path = Path(args.template).resolve()
    overrides = parameter_overrides(args, template_path)
    stack = load_stack(template_path, overrides, args.stack_name, args.bucket)
    functions = sorted(stack.functions.values(), key=lambda f: f.logical_id)
    ports = pick_ports(args, functions)
    if not (Path(args.functions_dir) / "Cargo.toml").is_file():
        raise StackError(f"--functions-dir {args.functions_dir} has no Cargo.toml")
    quotas = effective_quotas(args, template_path)
    LOCAL.mkdir(parents=True, exist_ok=True)
    envs = write_function_envs(functions, ports["edge"])
    routes_file = write_edge_routes(functions, ports)
    if not args.no_build:
        build_functions(args, functions)

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RUST_LOG"}
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

    try:
        # moto's Step Functions interpreter calls Lambda and S3 through the edge with boto
        # clients: credentials from its environment name the state machine's role.
        moto_env = {**base_env, "AWS_ACCESS_KEY_ID": stack.state_machine.logical_id, "AWS_SECRET_ACCESS_KEY": PRINCIPAL_SECRET}
        moto_cmd = [sys.executable, str(HERE / "moto_server.py"), "--port", str(ports["moto"]), "--edge-port", str(ports["edge"])]
        children["moto"] = spawn("moto", moto_cmd, moto_env, args.foreground)
        children["edge"] = spawn("edge", edge_command(args, ports, routes_file, template_path), base_env, args.foreground)
        for f in functions:
            # One watcher per function, so each runs with its own environment.
            children[f"lambda-{f.binary}"] = spawn(
                f"lambda-{f.binary}",
                watch_command(args, f, ports[f.logical_id]),
                {**base_env, **envs[f.logical_id]},
                args.foreground,
                cwd=args.functions_dir,
            )
        wait_until_up(children, ports, functions)
    except BaseException:
        cleanup()
        raise

    state = up_state(args, stack, overrides, ports, quotas, envs, children)
    write_state(state)
    log(f"up: endpoint {state['endpoint']} (moto :{ports['moto']}, functions {', '.join(f'{f.binary} :{ports[f.logical_id]}' for f in functions)})")
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


def up_state(
    args: argparse.Namespace,
    stack: template.Stack,
    overrides: dict[str, str],
    ports: dict[str, int],
    quotas: dict[str, float],
    envs: dict[str, dict[str, str]],
    children: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What the state file records of a started stack (the CLI, tests and `down` read it)."""
    template_path = Path(args.template).resolve()
    functions = sorted(stack.functions.values(), key=lambda f: f.logical_id)
    return {
        "version": 2,
        "root": str(ROOT),
        "endpoint": f"http://127.0.0.1:{ports['edge']}",
        "region": REGION,
        "accountId": ACCOUNT_ID,
        "stackName": stack.stack_name,
        "template": str(template_path),
        "parameterOverrides": overrides,
        "parameters": stack.parameters,
        "bucket": stack.bucket.name,
        "ports": ports,
        "quotas": quotas,
        "quotaScale": args.quota_scale,
        "quotasEnabled": not args.no_quotas,
        "functions": {
            f.logical_id: {
                "name": f.name,
                "arn": f.arn,
                "binary": f.binary,
                "timeout": f.timeout,
                "memory": f.memory,
                "port": ports[f.logical_id],
            }
            for f in functions
        },
        "functionsDir": str(Path(args.functions_dir).resolve()),
        # What every function shares (the CLI and benches read QUOTA_* and DEFAULT_* here).
        "functionEnv": common_env(list(envs.values())),
        "functionEnvs": envs,
        "processes": {n: {k: v for k, v in c.items() if k != "proc"} for n, c in children.items()},
        "startedAt": time.time(),
    }


def clear_stale_state() -> None:
    """Refuse to start over a running stack; remove the state file of one that is gone."""
    old = read_state()
    if old is None:
        return
    alive = [n for n, p in old.get("processes", {}).items() if is_ours(p)]
    if alive:
        raise StackError(f"a stack is already running ({', '.join(alive)}); run `script/local down` first")
    log("removing stale state file")
    STATE_FILE.unlink(missing_ok=True)


def pick_ports(args: argparse.Namespace, functions: list[template.Function]) -> dict[str, int]:
    """A free port for the edge, moto (unless given) and each function's watcher."""
    ports = {"edge": args.edge_port or free_port(), "moto": args.moto_port or free_port()}
    for f in functions:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[f.logical_id] = port
    if len(set(ports.values())) != len(ports):
        raise StackError(f"ports must differ: {ports}")
    for name, port in ports.items():
        if port_open(port):
            raise StackError(f"port {port} for {name} is already in use")
    return ports


def write_function_envs(functions: list[template.Function], edge_port: int) -> dict[str, dict[str, str]]:
    """Each function's environment, also written to .local/functions/<logical id>.env for its watcher."""
    env_dir = LOCAL / "functions"
    env_dir.mkdir(exist_ok=True)
    envs: dict[str, dict[str, str]] = {}
    for f in functions:
        envs[f.logical_id] = function_env(f, edge_port)
        (env_dir / f"{f.logical_id}.env").write_text("".join(f"{k}={v}\n" for k, v in envs[f.logical_id].items()))
    return envs


def write_edge_routes(functions: list[template.Function], ports: dict[str, int]) -> Path:
    """The edge's function routes (deployed name -> watcher URL, binary, timeout), as a file."""
    routes = {
        "functions": {
            f.name: {"url": f"http://127.0.0.1:{ports[f.logical_id]}", "binary": f.binary, "timeout": f.timeout}
            for f in functions
        }
    }
    routes_file = LOCAL / "edge-functions.json"
    routes_file.write_text(json.dumps(routes, indent=2) + "\n")
    return routes_file


def build_functions(args: argparse.Namespace, functions: list[template.Function]) -> None:
    """cargo lambda watch starts each function with `cargo run --bin <name>` on its first
    invoke; building each the same way now (same per-package feature set, so the same
    artifacts) keeps that first Step Functions task from waiting for a cold compile."""
    for f in functions:
        cmd = ["cargo", "build", "--bin", f.binary]
        log(f"building: {' '.join(cmd)}")
        if subprocess.run(cmd, cwd=args.functions_dir).returncode != 0:
            raise StackError(f"`{' '.join(cmd)}` failed in {args.functions_dir}")


def edge_command(args: argparse.Namespace, ports: dict[str, int], routes_file: Path, template_path: Path) -> list[str]:
    """The edge's command line: its ports, the function routes, the template's quotas and the options."""
    cmd = [
        sys.executable,
        str(HERE / "edge.py"),
        "--port",
        str(ports["edge"]),
        "--moto-url",
        f"http://127.0.0.1:{ports['moto']}",
        "--functions",
        str(routes_file),
        "--template",
        str(template_path),
        "--quota-scale",
        f"{args.quota_scale:g}",
    ]
    if args.quotas:
        cmd += ["--quotas", args.quotas]
    if args.no_quotas:
        cmd.append("--no-quotas")
    if args.faults:
        cmd += ["--faults", args.faults]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    if args.detach_propagation_seconds is not None:
        cmd += ["--detach-propagation-seconds", f"{args.detach_propagation_seconds:g}"]
    return cmd


def watch_command(args: argparse.Namespace, f: template.Function, port: int) -> list[str]:
    """One function's `cargo lambda watch` command line (its env file is write_function_envs')."""
    cmd = [
        venv_bin("cargo-lambda"),
        "lambda",
        "watch",
        "--invoke-address",
        "127.0.0.1",
        "--invoke-port",
        str(port),
        "--concurrency",
        str(args.lambda_concurrency),
        # The edge enforces the template's timeout. The watcher's own also cuts an idle
        # instance's long poll for its next event, which kills the instance (lambda_runtime
        # panics on the answer) and leaves later invokes hanging: keep it out of the way.
        "--timeout",
        str(WATCHER_TIMEOUT_S),
        "--env-file",
        str(LOCAL / "functions" / f"{f.logical_id}.env"),
        "--bin",
        f.binary,
    ]
    if not args.reload:
        cmd.append("--ignore-changes")
    return cmd


def wait_until_up(children: dict[str, dict[str, Any]], ports: dict[str, int], functions: list[template.Function]) -> None:
    """Wait for moto, the edge and every watcher to answer."""
    wait_healthy("moto", children["moto"], lambda: http_get(f"http://127.0.0.1:{ports['moto']}/moto-api/")[0] < 500, 60)
    wait_healthy("edge", children["edge"], lambda: http_get(f"http://127.0.0.1:{ports['edge']}/_edge/health")[0] == 200, 30)
    for f in functions:
        port = ports[f.logical_id]
        wait_healthy(f"lambda-{f.binary}", children[f"lambda-{f.binary}"], lambda p=port: port_open(p), 120)


def cmd_down(_args: argparse.Namespace) -> int:
    """Stop every recorded process group; remove the state file. Idempotent."""
    state = read_state()
    if state is None:
        log("nothing to stop (no .local/stack.json)")
        return 0
    procs = state.get("processes", {})
    # Watchers first (they end their function instances), then the edge and moto.
    for name in sorted(n for n in procs if n.startswith("lambda")) + ["edge", "moto"]:
        if name in procs:
            stop(name, procs[name])
    binaries = [f["binary"] for f in (state.get("functions") or {}).values() if isinstance(f, dict) and f.get("binary")]
    orphans = orphaned_functions(Path(state.get("functionsDir") or ROOT), binaries)
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
        # The operator: the edge authorizes this key against infra/operator-policy.json.
        "AWS_ACCESS_KEY_ID": OPERATOR_KEY,
        "AWS_SECRET_ACCESS_KEY": PRINCIPAL_SECRET,
        # The CLI signs as the operator, authorized against infra/operator-policy.json.
        "AWS_ACCESS_KEY_ID": iam.OPERATOR_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "THINGPRESS_BUCKET": state["bucket"],
        "THINGPRESS_EDGE_URL": state["endpoint"],
    }
    arn = (state.get("deployed") or {}).get("stateMachineArn")
    if arn:
        lines["THINGPRESS_STATE_MACHINE_ARN"] = arn
    # The budget table the functions use (the stack's BudgetTableName output on AWS).
    table = (state.get("functionEnv") or {}).get("BUDGET_TABLE")
    if table:
        lines["THINGPRESS_BUDGET_TABLE"] = table
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
    return {name: boto3.client(name, **kw) for name in ("s3", "iot", "iam", "stepfunctions", "dynamodb")}


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


def local_definition(sm: template.StateMachine) -> tuple[str, list[str]]:
    """The definition moto runs, and what differs from AWS: moto's Distributed Map cannot run
    EXPRESS child executions, so they run as STANDARD here (same states, no 5-minute cap)."""
    changed: list[str] = []
    doc = json.loads(sm.definition)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            config = node.get("ProcessorConfig")
            if isinstance(config, dict) and config.get("ExecutionType") == "EXPRESS":
                config["ExecutionType"] = "STANDARD"
                changed.append(f"{where}.ProcessorConfig.ExecutionType EXPRESS -> STANDARD")
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(doc, "$")
    return (json.dumps(doc, indent=1) if changed else sm.definition), changed


def edge_triggers(stack: template.Stack) -> list[dict[str, str]]:
    """The edge's S3 trigger rules from the template's EventBridge rules that start the state machine."""
    rules = []
    for rule in stack.trigger_rules:
        if rule.target_arn != stack.state_machine.arn:
            raise StackError(f"{rule.logical_id}: the local stack can only start {stack.state_machine.logical_id}, not {rule.target_arn}")
        try:
            pairs = template.s3_trigger(rule)
        except template.TemplateError as e:
            raise StackError(str(e)) from None
        for bucket, prefix in pairs:
            if bucket != stack.bucket.name:
                raise StackError(f"{rule.logical_id}: pattern names bucket {bucket}, not the stack's {stack.bucket.name}")
            rules.append({"bucket": bucket, "prefix": prefix, "stateMachineArn": rule.target_arn})
    return rules


def iam_principals(stack: template.Stack) -> dict[str, Any]:
    """POST /_edge/iam's body: each function (by logical id, its access key id), the state
    machine and each trigger rule, with the resolved statements of its role."""

    def entry(key: str, role: template.Role, session: str) -> dict[str, Any]:
        arn = f"arn:{template.partition(stack.region)}:sts::{stack.account_id}:assumed-role/{role.name}/{session}"
        return {"name": key, "arn": arn, "statements": role.statements}

    principals = {f.logical_id: entry(f.logical_id, f.role, f.name) for f in stack.functions.values()}
    sm = stack.state_machine
    principals[sm.logical_id] = entry(sm.logical_id, sm.role, sm.name)
    for rule in stack.trigger_rules:
        if rule.role is not None:
            principals[rule.logical_id] = entry(rule.logical_id, rule.role, rule.logical_id)
    # The operator (`thingpress` with `script/local env`'s key) under infra/operator-policy.json.
    import iam  # noqa: PLC0415 - local module, imported late on purpose

    try:
        policy = json.loads(OPERATOR_POLICY.read_text())
        principals[iam.OPERATOR_KEY] = iam.operator_principal(
            policy, stack.bucket.name, sm.arn, stack.region, stack.account_id, stack.stack_name, budget_table(stack)
        )
    except (OSError, ValueError) as e:
        raise StackError(f"{OPERATOR_POLICY}: {e}") from None
    return {"principals": principals}


def operator_principal(stack: template.Stack) -> dict[str, Any]:
    """The operator's entry for the edge: infra/operator-policy.json filled in for this stack."""
    path = ROOT / "infra" / "operator-policy.json"
    try:
        policy = json.loads(path.read_text())
        return iam.operator_principal(
            policy,
            stack.bucket.name,
            stack.state_machine.arn,
            stack.region,
            stack.account_id,
            stack.stack_name,
            budget_table(stack),
        )
    except (OSError, ValueError) as e:
        raise StackError(f"{path}: {e}") from None


def budget_table(stack: template.Stack) -> str | None:
    """The budget table the functions use (their shared BUDGET_TABLE: the stack's table, or a
    shared one the BudgetTableName parameter names), None when they have none."""
    return common_env([f.environment for f in stack.functions.values()]).get("BUDGET_TABLE") or None


def drift(state: dict[str, Any], stack: template.Stack, edge_port: int) -> list[str]:
    """What the running functions were started with that this template would change."""
    out = []
    running = state.get("functions") or {}
    envs = state.get("functionEnvs") or {}
    for f in stack.functions.values():
        now = running.get(f.logical_id)
        if not isinstance(now, dict):
            out.append(f"{f.logical_id} is not running")
            continue
        if now.get("name") != f.name or now.get("timeout") != f.timeout or now.get("binary") != f.binary:
            out.append(f"{f.logical_id}: name/binary/timeout differ")
        if envs.get(f.logical_id) != function_env(f, edge_port):
            out.append(f"{f.logical_id}: environment differs")
    return out


def deploy_bucket(s3: Any, bucket: template.Bucket) -> None:
    """The bucket with the template's versioning, encryption and lifecycle configuration."""
    _ignore_exists(lambda: s3.create_bucket(Bucket=bucket.name), "BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    if bucket.versioned:
        # Versioned as on AWS: every upload of the same key is a new version with its own id.
        s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
    if bucket.encryption:
        s3.put_bucket_encryption(Bucket=bucket.name, ServerSideEncryptionConfiguration=bucket.encryption)
    if bucket.lifecycle:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket.name, LifecycleConfiguration=bucket.lifecycle)
    # EventBridge notifications: the edge plays S3 → EventBridge (see edge_triggers).


def deploy_tables(ddb: Any, tables: list[template.Table]) -> None:
    """Each table with the template's keys, and its TTL attribute enabled; a table that exists
    is kept (with its items) when its keys are the template's."""
    for table in tables:
        created = _ignore_exists(lambda t=table: ddb.create_table(**t.create_table_request()), "ResourceInUseException")
        if not created:
            keys = ddb.describe_table(TableName=table.name)["Table"].get("KeySchema")
            if keys != table.key_schema:
                raise StackError(
                    f"table {table.name} exists with keys {keys}, the template declares {table.key_schema}: "
                    "restart the stack (`script/local down && script/local up`) to recreate it"
                )
        if table.ttl_attribute:
            ttl = ddb.describe_time_to_live(TableName=table.name).get("TimeToLiveDescription") or {}
            if ttl.get("TimeToLiveStatus") != "ENABLED" or ttl.get("AttributeName") != table.ttl_attribute:
                # moto records the setting but never expires items (readers filter on it, as on AWS).
                ddb.update_time_to_live(
                    TableName=table.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute}
                )


def deploy_roles(iam: Any, stack: template.Stack) -> None:
    """Every role with the template's trust policy and exactly its inline policies."""
    for role in stack.roles.values():
        deploy_role(iam, role)


def deploy_role(iam: Any, role: template.Role) -> None:
    """One role with its trust policy and exactly its inline policies (created or updated)."""
    created = _ignore_exists(
        lambda: iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=json.dumps(role.assume_role_policy)),
        "EntityAlreadyExists",
    )
    if not created:
        iam.update_assume_role_policy(RoleName=role.name, PolicyDocument=json.dumps(role.assume_role_policy))
        for name in iam.list_role_policies(RoleName=role.name)["PolicyNames"]:
            if name not in role.policies:
                iam.delete_role_policy(RoleName=role.name, PolicyName=name)
    for name, doc in role.policies.items():
        iam.put_role_policy(RoleName=role.name, PolicyName=name, PolicyDocument=json.dumps(doc))


# ---------------------------------------------------------------- targets (other accounts, Regions)

TARGET_ROLE_TEMPLATE = ROOT / "infra" / "target-role.yaml"
TARGET_ROLE_NAME = "thingpress-target"
# The functions whose roles a target role trusts (infra/target-role.yaml's TrustedRoleArns).
TARGET_CALLERS = ("SplitFunction", "RegisterFunction")


def account_client(moto_url: str, account: str, service: str, region: str = REGION) -> Any:
    """A boto3 client straight to moto, acting in `account`: moto maps the keys its STS issues
    for a role ARN to that ARN's account (it checks neither the role nor a trust policy), so an
    AssumeRole of any name there gives credentials of that account. The edge is bypassed on
    purpose: this is the target account's own deploy, not a Thingpress call."""
    import boto3

    kw = {"endpoint_url": moto_url, "region_name": region, **_boto_credentials(CREDENTIALS)}
    if account == ACCOUNT_ID:
        return boto3.client(service, **kw)
    creds = boto3.client("sts", **kw).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/thingpress-local-deploy", RoleSessionName="script-local-deploy"
    )["Credentials"]
    kw.update(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"]
    )
    return boto3.client(service, **kw)


def _boto_credentials(env: dict[str, str]) -> dict[str, str]:
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}


def target_role(account: str, trusted: list[str], external_id: str, role_name: str = TARGET_ROLE_NAME) -> template.Role:
    """infra/target-role.yaml's role as CloudFormation would create it in `account`."""
    try:
        return template.load_role(
            TARGET_ROLE_TEMPLATE,
            {"TrustedRoleArns": ",".join(trusted), "ExternalId": external_id, "RoleName": role_name},
            logical_id="TargetRole",
            region=REGION,
            account_id=account,
            stack_name=f"{DEFAULT_STACK_NAME}-target",
        )
    except template.TemplateError as e:
        raise StackError(str(e)) from None


def deploy_target_role(moto_url: str, account: str, trusted: list[str], external_id: str, role_name: str = TARGET_ROLE_NAME) -> str:
    """Deploy infra/target-role.yaml in `account` on moto; its role ARN."""
    role = target_role(account, trusted, external_id, role_name)
    deploy_role(account_client(moto_url, account, "iam"), role)
    return role.arn


def default_policy(region: str, account: str) -> dict[str, Any]:
    """DEFAULT_POLICY for another account and Region."""
    doc = json.loads(json.dumps(DEFAULT_POLICY))
    doc["Statement"][0]["Resource"] = doc["Statement"][0]["Resource"].replace(f":{REGION}:{ACCOUNT_ID}:", f":{region}:{account}:")
    return doc


def parse_targets(specs: list[str], target_account: str | None) -> list[tuple[str, str]]:
    """(account, region) of each --target ACCOUNT:REGION or REGION (the stack's account); a
    --target-account no --target names gets the stack's Region."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        account, _, region = spec.rpartition(":")
        account = account or ACCOUNT_ID
        if not account.isdigit() or len(account) != 12 or not region:
            raise StackError(f"--target {spec!r}: expected ACCOUNT:REGION (222222222222:eu-west-1) or REGION")
        if (account, region) not in out:
            out.append((account, region))
    if target_account and not any(a == target_account for a, _ in out):
        out.append((target_account, REGION))
    for account, region in out:
        if account != ACCOUNT_ID and account != target_account:
            raise StackError(f"--target {account}:{region}: another account needs its role: add --target-account {account} --external-id ...")
    return out


def deploy_targets(args: argparse.Namespace, state: dict[str, Any], stack: template.Stack, res: dict[str, Any]) -> list[dict[str, Any]]:
    """The target role in --target-account (trusting Split's and Register's roles, with
    --external-id) and the run's IoT resources in every target; what stack.json records."""
    targets = parse_targets(list(args.target or []) + list(args.target_region or []), args.target_account)
    if args.target_account and not args.external_id:
        raise StackError("--target-account needs --external-id (infra/target-role.yaml's ExternalId)")
    role_arn = None
    if args.target_account:
        if args.target_account == ACCOUNT_ID:
            raise StackError(f"--target-account {ACCOUNT_ID} is the stack's own account: name its Regions with --target REGION")
        functions = {f.logical_id: f for f in stack.functions.values()}
        missing = [lid for lid in TARGET_CALLERS if lid not in functions]
        if missing:
            raise StackError(f"the template has no {', '.join(missing)}: nothing would assume the target role")
        trusted = [functions[lid].role.arn for lid in TARGET_CALLERS]
        moto_url = f"http://127.0.0.1:{state['ports']['moto']}"
        role_arn = deploy_target_role(moto_url, args.target_account, trusted, args.external_id, args.target_role_name)
        log(f"target role {role_arn} trusts {', '.join(trusted)}")
    out = []
    for account, region in targets:
        policies = {n: (default_policy(region, account) if d == DEFAULT_POLICY else d) for n, d in (res.get("policies") or {}).items()}
        body = {"account": account, "region": region, "thingTypes": res.get("thingTypes") or [], "thingGroups": res.get("thingGroups") or [], "policies": policies}
        status, answer = _edge_post(state, "/_edge/targets/resources", body, "target resources")
        if status != 200:
            raise StackError(f"the edge could not create the IoT resources in {account}/{region}: HTTP {status} {answer[:300].decode(errors='replace')}")
        remote = account != ACCOUNT_ID
        out.append({
            "account": account,
            "region": region,
            "roleArn": role_arn if remote else None,
            "externalId": args.external_id if remote else None,
        })
    return out


def cmd_deploy(args: argparse.Namespace) -> int:
    """Create (or update) everything a run needs; idempotent."""
    state = require_state()
    template_path = Path(args.template or state.get("template") or DEFAULT_TEMPLATE).resolve()
    stack = load_stack(template_path, state.get("parameterOverrides") or {}, state.get("stackName") or DEFAULT_STACK_NAME, state["bucket"])
    changed = drift(state, stack, int(state["ports"]["edge"]))
    if changed:
        raise StackError(
            f"{template_path} changes the running functions ({'; '.join(changed)}): "
            "restart with `script/local down && script/local up --template ...`"
        )
    bucket = stack.bucket.name
    res = deploy_resources(args)
    c = clients(state)
    deploy_bucket(c["s3"], stack.bucket)
    deploy_tables(c["dynamodb"], list(stack.tables.values()))
    deploy_run_resources(c, bucket, res)
    deploy_roles(c["iam"], stack)
    sm = stack.state_machine
    definition, differences = local_definition(sm)
    for d in differences:
        log(f"state machine: {d} (moto cannot run EXPRESS child executions)")
    _ignore_exists(
        lambda: c["stepfunctions"].create_state_machine(
            name=sm.name, definition=definition, roleArn=sm.role.arn, type=sm.type
        ),
        "StateMachineAlreadyExists",
    )
    # moto's CreateStateMachine returns an existing machine unchanged, whatever the definition:
    # update always, so a re-deploy loads the current ASL.
    c["stepfunctions"].update_state_machine(stateMachineArn=sm.arn, definition=definition, roleArn=sm.role.arn)

    principals = deploy_edge_principals(state, stack)
    rules = deploy_edge_triggers(state, stack, args.no_trigger)
    targets = deploy_targets(args, state, stack, res)

    state = read_state() or state
    if targets or "targets" not in state:
        # A deploy without target options keeps the targets an earlier one set up.
        state["targets"] = targets
    state["deployed"] = {
        "stateMachineArn": sm.arn,
        "stateMachineName": sm.name,
        "template": str(template_path),
        "definition": str(sm.definition_path) if sm.definition_path else None,
        "childExecutionType": sm.substitutions.get("ChildExecutionType"),
        "localDifferences": differences,
        "roleArn": sm.role.arn,
        "roles": {r.logical_id: r.arn for r in stack.roles.values()},
        "iamPrincipals": sorted(principals["principals"]),
        "bucketVersioned": stack.bucket.versioned,
        "tables": {t.logical_id: t.name for t in stack.tables.values()},
        "thingTypes": res.get("thingTypes") or [],
        "thingGroups": res.get("thingGroups") or [],
        "policies": sorted(res.get("policies") or {}),
        "profiles": sorted(res.get("profiles") or {}),
        "triggers": rules,
        "at": time.time(),
    }
    write_state(state)
    log(f"deployed {sm.arn} with bucket {bucket}")
    print(json.dumps(state["deployed"], indent=2))
    return 0


def deploy_resources(args: argparse.Namespace) -> dict[str, Any]:
    """What deploy creates for the runs: --resources, plus the thing types, groups, policies
    and profiles named by the options."""
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
    return res


def deploy_run_resources(c: dict[str, Any], bucket: str, res: dict[str, Any]) -> None:
    """The profiles in the bucket; the IoT thing types, groups and policies (existing ones kept)."""
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


def deploy_edge_principals(state: dict[str, Any], stack: template.Stack) -> dict[str, Any]:
    """Give the edge each role's statements (and the operator's) to authorize calls with."""
    principals = iam_principals(stack)
    principals["principals"][iam.OPERATOR_KEY] = operator_principal(stack)
    status, answer = _edge_post(state, "/_edge/iam", principals, "IAM principals")
    if status == 404:
        log("the running edge does not authorize calls (no /_edge/iam): calls run unchecked")
    elif status != 200:
        raise StackError(f"the edge refused the IAM principals: HTTP {status} {answer[:300].decode(errors='replace')}")
    return principals


def deploy_edge_triggers(state: dict[str, Any], stack: template.Stack, no_trigger: bool) -> list[dict[str, str]]:
    """Point the edge's S3 trigger at the state machine (the stack's EventBridge rule); the rules set."""
    # The stack's EventBridge rule, emulated by the edge.
    rules = [] if no_trigger else edge_triggers(stack)
    status, answer = _edge_post(state, "/_edge/triggers", {"rules": rules}, "S3 trigger")
    if status == 404:
        # An edge started before the trigger existed: deploy still works, uploads start nothing.
        log("the running edge has no S3 trigger (it predates it): restart the stack for uploads to start imports")
        rules = []
    elif status != 200:
        raise StackError(f"the edge refused the S3 trigger: HTTP {status} {answer[:300].decode(errors='replace')}")
    return rules


def _edge_post(state: dict[str, Any], route: str, body: Any, what: str) -> tuple[int, bytes]:
    try:
        return http_post_json(f"{state['endpoint']}{route}", body)
    except OSError as e:
        raise StackError(f"cannot configure the edge's {what} at {state['endpoint']}: {e}") from None


# ---------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="script/local", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start moto, the edge and one cargo lambda watch per function")
    up.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="SAM template (default infra/template.yaml)")
    up.add_argument("--stack-name", default=DEFAULT_STACK_NAME, help="the stack name the template's names derive from")
    up.add_argument("--parameter", action="append", metavar="NAME=VALUE", help="template parameter override (repeatable)")
    up.add_argument("--edge-port", type=int, default=int(os.environ.get("THINGPRESS_EDGE_PORT", 0)))
    up.add_argument("--moto-port", type=int, default=0)
    up.add_argument("--bucket", default=DEFAULT_BUCKET, help="name of the template's bucket (CloudFormation would generate one)")
    up.add_argument(
        "--quota-scale", type=float, default=1.0, help="multiply AWS's default IoT quotas (edge) and the template's Quota* defaults"
    )
    up.add_argument("--quotas", help="edge quota JSON (inline or file)")
    up.add_argument("--no-quotas", action="store_true", help="the edge enforces no IoT rate limits")
    up.add_argument("--faults", help="edge fault JSON (inline or file)")
    up.add_argument("--seed", type=int, help="seed for the edge's fault injection")
    up.add_argument(
        "--detach-propagation-seconds",
        type=float,
        help="how long after a DetachThingPrincipal the edge refuses DeleteThing / DeleteCertificate of that thing / certificate (edge default 1; 0: off)",
    )
    up.add_argument("--max-concurrency", type=int, help="template parameter MaxConcurrency")
    up.add_argument("--chunk-size", type=int, help="template parameter ChunkSize")
    up.add_argument("--reserve", type=float, help="template parameter QuotaReserve")
    up.add_argument("--rust-log", help="template parameter LogLevel (error, warn, info, debug, trace)")
    up.add_argument("--lambda-concurrency", type=int, default=8, help="instances per function in its cargo lambda watch")
    up.add_argument("--reload", action="store_true", help="let cargo lambda watch rebuild on source changes")
    up.add_argument("--no-build", action="store_true", help="skip the up-front cargo build of the functions")
    up.add_argument(
        "--functions-dir", type=Path, default=ROOT, help="Cargo workspace whose binaries cargo lambda watch serves"
    )
    up.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops everything")
    up.set_defaults(func=cmd_up)

    dp = sub.add_parser("deploy", help="create bucket, roles, state machine, trigger, profiles and IoT resources")
    dp.add_argument(
        "--template", type=Path, help="SAM template (default: the one `up` used); it may change roles, not the functions"
    )
    dp.add_argument("--resources", help="JSON {thingTypes[], thingGroups[], policies{name: doc}, profiles{name: {...}}}")
    dp.add_argument("--thing-type", action="append", help="extra thing type (repeatable)")
    dp.add_argument("--thing-group", action="append", help="extra thing group (repeatable)")
    dp.add_argument("--policy", action="append", help="extra IoT policy with the default document (repeatable)")
    dp.add_argument("--profile", action="append", help="profile JSON file to store as profiles/<name>.json (repeatable)")
    dp.add_argument(
        "--no-trigger", action="store_true", help="uploads start nothing (the edge's trigger rules are removed)"
    )
    dp.add_argument(
        "--target",
        action="append",
        metavar="[ACCOUNT:]REGION",
        help="a profile target: create the run's thing types, groups and policies there too (repeatable)",
    )
    dp.add_argument("--target-region", action="append", metavar="REGION", help="= --target REGION (the stack's account)")
    dp.add_argument(
        "--target-account",
        metavar="ACCOUNT",
        help="deploy infra/target-role.yaml in this account (trusting Split's and Register's roles); a target there",
    )
    dp.add_argument("--external-id", help="the target role's ExternalId (with --target-account)")
    dp.add_argument("--target-role-name", default=TARGET_ROLE_NAME, help="the target role's RoleName")
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
