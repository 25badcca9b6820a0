"""The embedded TF-Serving-compatible gRPC server behind ``htr serve``.

TF Serving's own ``tensorflow_model_server`` comes only as a Docker image or from Google's
APT repository (``Dockerfile.serving`` is that production path).  This server speaks the
same protocol from the ``tensorflow-serving-api`` protos over the same model repository
and ``models.config``, so a client written against it works unchanged against TF Serving:

* ``PredictionService``: ``Predict`` (any signature of a served SavedModel, checked against
  its ``SignatureDef``: input names, dtypes and shapes) and ``GetModelMetadata``
  (``signature_def``); ``ModelService``: ``GetModelStatus``.
* Models load with ``tf.saved_model.load`` and run through their signature functions.
* Versions follow each model's version policy (latest N, all, specific) and version
  labels.  The repository is polled: a new version directory is loaded next to the old
  one, then the old one is unloaded; requests already running on it finish (each holds
  its own reference), so no request is dropped.
* At most ``max_concurrent`` requests run at once and ``max_queue`` more wait; beyond that
  the answer is ``RESOURCE_EXHAUSTED``.  A request whose deadline passed while it waited
  is not run (``DEADLINE_EXCEEDED``).  Messages are limited to ``max_message_bytes``.
* Errors use TF Serving's status codes: an unknown model or version is ``NOT_FOUND``, an
  unknown signature ``FAILED_PRECONDITION``, wrong input names, dtypes or shapes and
  anything TensorFlow rejects as an argument ``INVALID_ARGUMENT`` naming the problem.
* It listens on 127.0.0.1 unless told otherwise, with optional TLS, and stops cleanly:
  :func:`run_until_signalled` turns SIGTERM/SIGINT into a graceful stop.

Unlike TF Serving it does not batch requests together (each request is already a batch
of lines) and has no REST API or Prometheus endpoint.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.serving.repository import ModelEntry, aspired_versions, available_versions, read_model_entries

__all__ = ["ServerOptions", "Servable", "ModelManager", "ModelServer", "serve", "run_until_signalled", "stop_signals",
           "DEFAULT_SIGNATURE"]

log = logging.getLogger("htr_tf.serving")

DEFAULT_SIGNATURE = "serving_default"
#: Load attempts per version before the poller gives up on it (TF Serving retries too).
MAX_LOAD_ATTEMPTS = 3


@dataclass
class ServerOptions:
    """How ``htr serve`` listens and how much work it accepts."""

    host: str = "127.0.0.1"
    port: int = 8500
    #: Requests running at once (worker threads).
    max_concurrent: int = 4
    #: Requests allowed to wait for a worker; more get RESOURCE_EXHAUSTED.
    max_queue: int = 16
    #: Largest request or response message.
    max_message_bytes: int = 64 * 1024 * 1024
    #: Seconds between scans of the repository for new or removed versions (0: never).
    poll_seconds: float = 1.0
    #: PEM files for TLS (both or neither).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Seconds running requests get to finish on stop.
    grace_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_queue < 0:
            raise ConfigError("max_concurrent must be >= 1 and max_queue >= 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if self.max_message_bytes < 1024:
            raise ConfigError("max_message_bytes must be at least 1024")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TLS needs both a certificate and a key")


class _Abort(Exception):
    """An RPC answer other than OK: ``code`` is a ``grpc.StatusCode`` name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- one loaded version ------------------------------------------------------------------------------
class Servable:
    """One version of one model: the loaded SavedModel and its ``SignatureDef``s."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.name, self.version, self.path = name, version, Path(path)
        sm = saved_model_pb2.SavedModel()
        sm.ParseFromString((self.path / "saved_model.pb").read_bytes())
        if not sm.meta_graphs:
            raise ModelError(f"{path}: the SavedModel has no MetaGraph")
        self.signature_defs = {k: v for k, v in sm.meta_graphs[0].signature_def.items()
                               if not k.startswith("__")}
        self.loaded = tf.saved_model.load(str(self.path))
        self.functions = dict(self.loaded.signatures)

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call ``signature`` on numpy inputs; numpy outputs."""
        import tensorflow as tf

        out = self.functions[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}


def _shape_text(dims: Iterable[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def check_inputs(servable: Servable, signature: str, request_inputs: Any) -> dict[str, np.ndarray]:
    """Request ``TensorProto``s -> numpy, checked against the ``SignatureDef`` (:class:`_Abort`)."""
    from htr_tf.serving.tensors import dtype_name, from_tensor_proto

    sig = servable.signature_defs[signature]
    want, sent = set(sig.inputs), set(request_inputs)
    if want != sent:
        raise _Abort("INVALID_ARGUMENT",
                     f"inputs do not match signature '{signature}' of model '{servable.name}': "
                     f"sent extra: {{{', '.join(sorted(sent - want))}}}; "
                     f"missing but required: {{{', '.join(sorted(want - sent))}}}; "
                     f"the signature takes {{{', '.join(sorted(want))}}}")
    out = {}
    for key in sorted(want):
        info, proto = sig.inputs[key], request_inputs[key]
        if proto.dtype != info.dtype:
            raise _Abort("INVALID_ARGUMENT",
                         f"input '{key}' of signature '{signature}' must be {dtype_name(info.dtype)}, "
                         f"got {dtype_name(proto.dtype)}")
        try:
            value = from_tensor_proto(proto, f"input '{key}'")
        except DataError as e:
            raise _Abort("INVALID_ARGUMENT", str(e)) from None
        if not info.tensor_shape.unknown_rank:
            dims = [d.size for d in info.tensor_shape.dim]
            if len(dims) != value.ndim or any(d >= 0 and d != s for d, s in zip(dims, value.shape)):
                raise _Abort("INVALID_ARGUMENT",
                             f"input '{key}' has shape {_shape_text(value.shape)} but signature "
                             f"'{signature}' of model '{servable.name}' expects {_shape_text(dims)} "
                             f"(-1: any size)")
        out[key] = value
    return out


# -- the versions of every model -----------------------------------------------------------------------
class ModelManager:
    """Which versions of which models are served; :meth:`poll` brings them in line with the disk."""

    def __init__(self, entries: list[ModelEntry], loader: Any = Servable) -> None:
        if not entries:
            raise ConfigError("no models to serve")
        self.entries = {e.name: e for e in entries}
        self._loader = loader
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._serving: dict[str, dict[int, Servable]] = {e.name: {} for e in entries}
        #: name -> version -> (state name, error code name or "OK", message)
        self._states: dict[str, dict[int, tuple[str, str, str]]] = {e.name: {} for e in entries}
        self._attempts: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loading ----------------------------------------------------------------------------------
    def poll(self) -> None:
        """Load aspired versions not yet served, then unload served ones no longer aspired."""
        with self._poll_lock:
            for name, entry in self.entries.items():
                aspired = aspired_versions(entry, available_versions(entry.path))
                for v in aspired:
                    if v in self._serving[name] or self._attempts.get((name, v), 0) >= MAX_LOAD_ATTEMPTS:
                        continue
                    self._set_state(name, v, "LOADING")
                    try:
                        servable = self._loader(name, v, entry.path / str(v))
                    except Exception as e:  # a corrupt or half-copied version must not stop the others
                        self._attempts[(name, v)] = self._attempts.get((name, v), 0) + 1
                        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        log.warning("cannot load %s version %d (attempt %d): %s", name, v,
                                    self._attempts[(name, v)], msg)
                        self._set_state(name, v, "END", "UNKNOWN", f"could not load: {msg}")
                        continue
                    with self._lock:
                        self._serving[name][v] = servable
                    self._set_state(name, v, "AVAILABLE")
                    log.info("serving %s version %d from %s", name, v, entry.path / str(v))
                keep = set(aspired)
                if not keep & set(self._serving[name]):
                    keep = set(self._serving[name])   # nothing new loaded: keep serving what we have
                for v in sorted(set(self._serving[name]) - keep):
                    self._set_state(name, v, "UNLOADING")
                    with self._lock:
                        del self._serving[name][v]  # running requests keep their own reference
                    self._set_state(name, v, "END")
                    log.info("unloaded %s version %d", name, v)

    def _set_state(self, name: str, version: int, state: str, code: str = "OK", message: str = "") -> None:
        with self._lock:
            self._states[name][version] = (state, code, message)

    def start_polling(self, seconds: float) -> None:
        if seconds <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.poll()
                except Exception:  # keep polling; the error is logged
                    log.exception("polling the model repository failed")

        self._thread = threading.Thread(target=loop, name="htr-serve-poll", daemon=True)
        self._thread.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    # -- lookups ------------------------------------------------------------------------------------
    def resolve(self, spec: Any) -> Servable:
        """The servable a ``ModelSpec`` names (latest, a version or a label), or :class:`_Abort`."""
        name = spec.name
        if not name:
            raise _Abort("INVALID_ARGUMENT", "the request names no model (model_spec.name is empty)")
        with self._lock:
            versions = self._serving.get(name)
            if versions is None:
                raise _Abort("NOT_FOUND", f"Servable not found for request: Latest({name}); "
                                          f"this server has models {sorted(self._serving)}")
            which = spec.WhichOneof("version_choice")
            if which == "version":
                v = int(spec.version.value)
            elif which == "version_label":
                label = spec.version_label
                if label not in self.entries[name].labels:
                    raise _Abort("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
                v = self.entries[name].labels[label]
            else:
                if not versions:
                    raise _Abort("NOT_FOUND", f"Servable not found for request: Latest({name}); "
                                              f"no version of it is loaded")
                return versions[max(versions)]
            if v not in versions:
                raise _Abort("NOT_FOUND", f"Servable not found for request: Specific({name}, {v}); "
                                          f"serving versions {sorted(versions)}")
            return versions[v]

    def status(self, name: str, version: int | None = None) -> list[tuple[int, str, str, str]]:
        """``[(version, state, error code, message)]`` for ``name`` (one version when given)."""
        with self._lock:
            states = self._states.get(name)
            if not states:
                raise _Abort("NOT_FOUND", f"Could not find any versions of model {name}")
            if version is not None:
                if version not in states:
                    raise _Abort("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [(version, *states[version])]
            return [(v, *states[v]) for v in sorted(states)]

    def served(self) -> dict[str, list[int]]:
        with self._lock:
            return {n: sorted(v) for n, v in self._serving.items()}


# -- the gRPC services ---------------------------------------------------------------------------------
def _answer(context: Any, fn: Any) -> Any:
    """Run ``fn()``, turning :class:`_Abort` and unexpected errors into gRPC statuses."""
    import grpc

    try:
        return fn()
    except _Abort as e:
        context.abort(getattr(grpc.StatusCode, e.code), e.message)
    except Exception as e:
        log.exception("request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")


def _check_deadline(context: Any) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise _Abort("DEADLINE_EXCEEDED", "the request's deadline passed before it could run")
    if not context.is_active():
        raise _Abort("CANCELLED", "the client went away")


def _make_services(manager: ModelManager) -> tuple[Any, Any]:
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    from htr_tf.serving.tensors import to_tensor_proto

    def spec_of(servable: Servable, signature: str, out: Any) -> None:
        out.name = servable.name
        out.version.value = servable.version
        if signature:
            out.signature_name = signature

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            def run():
                import tensorflow as tf

                servable = manager.resolve(request.model_spec)
                signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
                if signature not in servable.signature_defs:
                    raise _Abort("FAILED_PRECONDITION",
                                 f'Serving signature key "{signature}" not found; model '
                                 f"'{servable.name}' version {servable.version} has "
                                 f"{sorted(servable.signature_defs)}")
                outputs = servable.signature_defs[signature].outputs
                wanted = list(request.output_filter) or sorted(outputs)
                bad = [a for a in wanted if a not in outputs]
                if bad or len(set(wanted)) != len(wanted):
                    raise _Abort("INVALID_ARGUMENT",
                                 f"output tensor alias not found in signature or repeated: {bad or wanted}; "
                                 f"outputs expected to be in the set {{{', '.join(sorted(outputs))}}}")
                inputs = check_inputs(servable, signature, request.inputs)
                _check_deadline(context)
                try:
                    result = servable.run(signature, inputs)
                except tf.errors.InvalidArgumentError as e:
                    raise _Abort("INVALID_ARGUMENT", f"{signature}: {e.message.strip().splitlines()[0]}") from None
                except tf.errors.ResourceExhaustedError as e:
                    raise _Abort("RESOURCE_EXHAUSTED", e.message.strip().splitlines()[0]) from None
                response = predict_pb2.PredictResponse()
                spec_of(servable, signature, response.model_spec)
                for alias in wanted:
                    to_tensor_proto(result[alias], response.outputs[alias])
                return response

            return _answer(context, run)

        def GetModelMetadata(self, request, context):
            def run():
                fields = list(request.metadata_field)
                if not fields:
                    raise _Abort("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one "
                                                     "metadata_field (signature_def)")
                for f in fields:
                    if f != "signature_def":
                        raise _Abort("INVALID_ARGUMENT", f"Metadata field {f} is not supported; only signature_def")
                servable = manager.resolve(request.model_spec)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                spec_of(servable, "", response.model_spec)
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                for k, v in servable.signature_defs.items():
                    sig_map.signature_def[k].CopyFrom(v)
                response.metadata["signature_def"].Pack(sig_map)
                return response

            return _answer(context, run)

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            def run():
                spec = request.model_spec
                if not spec.name:
                    raise _Abort("INVALID_ARGUMENT", "the request names no model (model_spec.name is empty)")
                version = int(spec.version.value) if spec.WhichOneof("version_choice") == "version" else None
                if spec.WhichOneof("version_choice") == "version_label":
                    labels = manager.entries.get(spec.name).labels if spec.name in manager.entries else {}
                    if spec.version_label not in labels:
                        raise _Abort("INVALID_ARGUMENT", f"Unrecognized servable version label: {spec.version_label}")
                    version = labels[spec.version_label]
                response = get_model_status_pb2.GetModelStatusResponse()
                for v, state, code, message in manager.status(spec.name, version):
                    s = response.model_version_status.add()
                    s.version = v
                    s.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
                    s.status.error_code = _TF_CODES[code]
                    s.status.error_message = message
                return response

            return _answer(context, run)

    return PredictionService(), ModelService()


#: grpc.StatusCode name -> tensorflow.error.Code value (the same numbers as gRPC's).
_TF_CODES = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
             "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
             "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
             "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16}


# -- the server ----------------------------------------------------------------------------------------
class ModelServer:
    """The gRPC server over a :class:`ModelManager`; :meth:`start` loads the models first."""

    def __init__(self, entries: list[ModelEntry], options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.manager = ModelManager(entries)
        self._server: Any = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        host = self.options.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def start(self) -> "ModelServer":
        """Load every model's aspired versions, then listen; :class:`ModelError` when a model has none."""
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        o = self.options
        self.manager.poll()
        missing = [n for n, v in self.manager.served().items() if not v]
        if missing:
            details = "; ".join(f"{n} ({self.manager.entries[n].path}): " + (
                "; ".join(m for _, _, _, m in self.manager.status(n) if m) if self.manager._states[n]
                else "no version directory with a saved_model.pb") for n in missing)
            raise ModelError(f"nothing to serve for {', '.join(missing)}: {details}")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=o.max_concurrent, thread_name_prefix="htr-serve"),
            options=[("grpc.max_receive_message_length", o.max_message_bytes),
                     ("grpc.max_send_message_length", o.max_message_bytes),
                     ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=o.max_concurrent + o.max_queue)
        prediction, model = _make_services(self.manager)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, server)
        target = f"[{o.host}]:{o.port}" if ":" in o.host else f"{o.host}:{o.port}"
        try:
            if o.tls_cert:
                creds = grpc.ssl_server_credentials([(Path(o.tls_key).read_bytes(), Path(o.tls_cert).read_bytes())])
                port = server.add_secure_port(target, creds)
            else:
                port = server.add_insecure_port(target)
        except OSError as e:
            raise ConfigError(f"cannot read the TLS files: {e}") from None
        except RuntimeError as e:
            raise ConfigError(f"cannot listen on {target}: {e} (is the port in use?)") from None
        if not port:
            raise ConfigError(f"cannot listen on {target} (is the port in use?)")
        server.start()
        self._server, self.port = server, port
        self.manager.start_polling(o.poll_seconds)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting requests, let running ones finish within ``grace`` seconds, stop polling."""
        self.manager.stop_polling()
        if self._server is not None:
            self._server.stop(self.options.grace_seconds if grace is None else grace).wait()
            self._server = None

    def wait(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout) if self._server is not None else True

    def __enter__(self) -> "ModelServer":
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop(0)


def serve(repository: str | os.PathLike | None = None, model_config: str | os.PathLike | None = None,
          options: ServerOptions | None = None, **option_values: Any) -> ModelServer:
    """Start a :class:`ModelServer` over a repository; returns it running.

    ``model_config`` defaults to ``REPOSITORY/models.config``; with a repository, base
    paths are taken as its directories (see :func:`read_model_entries`).
    ``option_values`` set :class:`ServerOptions` fields (``port=0`` picks a free port).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if repository is None and model_config is None:
        raise ConfigError("give a model repository, a models.config, or both")
    if repository is not None and not Path(repository).is_dir():
        raise ConfigError(f"{repository}: no such model repository")
    config = Path(model_config) if model_config is not None else Path(repository) / "models.config"
    entries = read_model_entries(config, repository)
    if options is None:
        options = ServerOptions(**option_values)
    elif option_values:
        raise ConfigError("pass either options or option values, not both")
    return ModelServer(entries, options).start()


def stop_signals() -> tuple[threading.Event, Any]:
    """Make SIGTERM and SIGINT set an event (install before loading: a signal during start-up
    is then a clean stop too); returns (event, a function that restores the old handlers)."""
    import signal

    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return stop, restore


def run_until_signalled(server: ModelServer, stop: threading.Event | None = None) -> int:
    """Block until SIGTERM or SIGINT (or ``stop`` is set), then stop gracefully: running requests
    finish within the grace period.  Returns 0."""
    restore = None
    if stop is None:
        stop, restore = stop_signals()
    try:
        while not stop.wait(0.5):
            pass
        log.info("stopping: running requests get %.0f s to finish", server.options.grace_seconds)
        t = time.monotonic()
        server.stop()
        log.info("stopped in %.1f s", time.monotonic() - t)
    finally:
        if restore is not None:
            restore()
    return 0
