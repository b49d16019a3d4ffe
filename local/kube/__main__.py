"""``python -m local.kube serve``: run the local cluster in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from local.kube.catalog import CatalogError
from local.kube.cluster import DEFAULT_DOMAIN, LocalCluster

if TYPE_CHECKING:
    from local.faults.kube import KubeFaultInjector


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.kube", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API and the gateway until stopped")
    serve.add_argument("--host", default="127.0.0.1", help="address both servers bind")
    serve.add_argument("--port", type=int, default=0, help="API server port (0: pick a free one)")
    serve.add_argument(
        "--gateway-port", type=int, default=0, help="gateway port (0: pick a free one)"
    )
    serve.add_argument("--domain", default=DEFAULT_DOMAIN, help="Knative domain for service URLs")
    serve.add_argument("--catalog", type=Path, required=True, help="image catalog YAML")
    serve.add_argument(
        "--revision-logs",
        type=Path,
        help="folder for each revision's log (default: a temporary one, removed at stop)",
    )
    serve.add_argument("--ready-file", type=Path, help="write the URLs here (JSON) once serving")
    serve.add_argument("--log-level", default="WARNING", help="Python logging level")
    serve.add_argument("--faults", type=Path, help="inject the `kube` faults of this fault spec")
    serve.add_argument("--fault-counts", type=Path, help="where to count injected faults (JSON)")
    return parser


def write_ready_file(path: Path, content: dict[str, object]) -> None:
    """Write JSON atomically (temporary file + rename) so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content))
    temporary.replace(path)


def _faults(args: argparse.Namespace) -> KubeFaultInjector | None:
    if args.faults is None:
        return None
    from local.faults.kube import KubeFaultInjector

    counts = args.fault_counts or args.faults.with_name("kube-faults.json")
    return KubeFaultInjector.from_files(args.faults, counts)


def serve(args: argparse.Namespace) -> int:
    """Start the cluster, announce it, block until a stop signal, stop everything."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if not args.catalog.is_file():
        print(f"error: image catalog {args.catalog} not found", file=sys.stderr)
        return 2
    try:
        cluster = LocalCluster(
            host=args.host,
            port=args.port,
            gateway_port=args.gateway_port,
            domain=args.domain,
            catalog=args.catalog,
            revision_log_dir=args.revision_logs,
            faults=_faults(args),
        )
    except (CatalogError, OSError) as error:
        print(f"error: cannot start the local cluster: {error}", file=sys.stderr)
        return 2
    try:
        cluster.start()
        if args.ready_file is not None:
            write_ready_file(
                args.ready_file,
                {
                    "kube_server": cluster.kube_server,
                    "gateway_url": cluster.gateway_url,
                    "pid": os.getpid(),
                },
            )
        print(f"kube_server={cluster.kube_server} gateway_url={cluster.gateway_url}", flush=True)
        while not stop_requested.wait(1.0):
            pass
    finally:
        cluster.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
