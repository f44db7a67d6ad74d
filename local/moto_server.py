"""Start a moto server configured the way Thingpress's local stack needs it.

Usage: moto_server.py --port MOTO_PORT --edge-port EDGE_PORT [--host 127.0.0.1]

- iot.use_valid_cert: certificateId = SHA-256 of the DER, as AWS IoT computes it
  (moto's default hashes the PEM text instead).
- stepfunctions.execute_state_machine: moto interprets the real ASL instead of
  returning canned executions.
- MOTO_PORT = the edge's port: moto's Step Functions interpreter builds its boto3
  clients with endpoint http://localhost:$MOTO_PORT (moto/stepfunctions/parser/asl/
  utils/boto_client.py), so Lambda tasks, the S3 ItemReader and the ResultWriter go
  through the edge, which routes Lambda Invoke to `cargo lambda watch`.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Configure moto and run its server until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="port moto listens on")
    parser.add_argument(
        "--edge-port",
        type=int,
        required=True,
        help="port of the edge; moto's SFN interpreter sends its AWS calls there",
    )
    args = parser.parse_args(argv)

    # Must be set before moto reads it (moto.settings.moto_server_port reads it per call,
    # and moto.server.main only sets it when absent).
    os.environ["MOTO_PORT"] = str(args.edge_port)

    from moto.core.config import default_user_config
    from moto import server

    default_user_config.setdefault("iot", {})["use_valid_cert"] = True
    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True

    server.main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main(sys.argv[1:])
