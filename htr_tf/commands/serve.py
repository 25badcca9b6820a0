"""`htr serve`: the embedded TF-Serving-compatible gRPC server over a model repository."""

from __future__ import annotations

import argparse
import os
import sys


def _serve(a: argparse.Namespace) -> int:
    import logging

    from htr_tf.serving.server import ServerOptions, run_until_signalled, serve, stop_signals

    logging.basicConfig(level=logging.INFO, format="%(asctime)s htr serve: %(message)s", stream=sys.stderr)
    options = ServerOptions(host=a.host, port=a.port, max_concurrent=a.max_concurrent, max_queue=a.max_queue,
                            max_message_bytes=int(a.max_message_mb * 1024 * 1024), poll_seconds=a.poll_seconds,
                            tls_cert=a.tls_cert, tls_key=a.tls_key, grace_seconds=a.grace)
    stop, restore = stop_signals()          # before loading: SIGTERM while loading stops cleanly too
    try:
        server = serve(a.repository, a.model_config, options)
    except BaseException:
        restore()
        raise
    if stop.is_set():
        server.stop(0)
        restore()
        return 0
    models = ", ".join(f"{n} (version {', '.join(map(str, v))})" for n, v in server.manager.served().items())
    print(f"htr serve: {models} on {server.address} (gRPC{', TLS' if a.tls_cert else ''}); "
          f"SIGTERM or Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        run_until_signalled(server, stop)
    finally:
        restore()
    # Stopped cleanly and nothing is left to write: skip the interpreter's teardown of TensorFlow
    # and gRPC, which took 3-9 s here, so SIGTERM ends the process promptly.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="the embedded TF-Serving-compatible gRPC server",
        description="Serve a model repository (written by `htr export repository`) over TF Serving's gRPC "
                    "API: PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus). "
                    "New version directories are picked up while serving. Production deployments can run "
                    "TF Serving itself on the same repository (Dockerfile.serving, serving/README.md).")
    p.add_argument("--repository", help="model repository directory (NAME/VERSION/saved_model.pb)")
    p.add_argument("--model-config", help="TF Serving models.config (default: REPOSITORY/models.config); with "
                                          "--repository, base paths name its directories by their last part")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes the server to the network)")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500; 0 picks a free one)")
    p.add_argument("--max-concurrent", type=int, default=4, help="requests run at once (default 4)")
    p.add_argument("--max-queue", type=int, default=16,
                   help="requests waiting beyond those; more get RESOURCE_EXHAUSTED (default 16)")
    p.add_argument("--max-message-mb", type=float, default=64.0, help="largest request/response in MiB (default 64)")
    p.add_argument("--poll-seconds", type=float, default=1.0,
                   help="seconds between scans for new model versions (default 1; 0 never)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve over TLS (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds running requests get to finish on SIGTERM (default 10)")
    p.set_defaults(func=_serve)
