"""gRPC client for TF Serving (or ``htr serve``) and the pipeline backend that uses it.

:class:`Client` wraps the ``tensorflow-serving-api`` stubs: ``predict`` (numpy in, numpy
out), ``model_metadata``/``signatures`` (``GetModelMetadata``), ``model_status``
(``GetModelStatus``), with a deadline per call and retries with exponential backoff and
jitter while the server is ``UNAVAILABLE`` (starting, restarting, between replicas) or
``RESOURCE_EXHAUSTED`` (overloaded).  Failures become :mod:`htr_tf.errors` exceptions with
one clear line: :class:`ServerUnavailable` when nothing answers, :class:`~htr_tf.errors.ModelError`
for a missing model or signature, :class:`~htr_tf.errors.DataError` for a request the
server rejected, :class:`ServingError` for the rest.

:class:`GrpcBackend` implements :class:`htr_tf.pipeline.Backend` over the served models
(``paragraph``, ``lines``, ``recognizer``), so ``Pipeline(GrpcBackend.connect(...), decoder)``
runs the in-process pipeline's code with only the networks on the server: every image rule
runs here, in the same numpy/OpenCV code as in process (the layout models' ``preprocess`` and
``postprocess``, :func:`htr_tf.recognize.line_batch`), and the server gets the networks'
inputs (signatures ``mask`` and ``recognize``).  So a page gives the same text and boxes
over gRPC as in process, and far fewer bytes cross the wire than the page itself.  CTC/LM
decoding stays here.  The charset, line geometry and width downsampling come from the served
recogniser's metadata JSON (signature ``metadata_batch``, or ``metadata`` for exports that
predate it), the layout models' configs from theirs, never from a local copy; recogniser
requests name the version that JSON came from, so a charset never meets another version's
outputs.

>>> from htr_tf.pipeline import Pipeline                                      # doctest: +SKIP
>>> pipe = Pipeline(GrpcBackend.connect("127.0.0.1:8500"), "beam+lm")          # doctest: +SKIP
>>> print(pipe.run("page.png").text)                                           # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from htr_tf.errors import DataError, ModelError
from htr_tf.pipeline import LayoutModelsMixin

__all__ = ["Client", "GrpcBackend", "Prediction", "ServingError", "ServerUnavailable",
           "DEFAULT_ADDRESS", "METADATA_SIGNATURES"]

DEFAULT_ADDRESS = "127.0.0.1:8500"
#: Signatures that return a model's ``htr.json``, in the order tried.
METADATA_SIGNATURES = ("metadata_batch", "metadata")


class ServingError(ModelError):
    """The model server failed a request: overloaded, too slow, or an error on its side."""


class ServerUnavailable(ServingError):
    """No model server answers at the address (down, not started, wrong address)."""


class Prediction(dict):
    """``Predict``'s outputs by alias (numpy arrays), plus the model, version and signature that answered."""

    model: str
    version: int
    signature: str


def _read_pem(value: str | bytes | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        return Path(value).read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read the TLS certificate {value}: {e.strerror}") from None


class Client:
    """A connection to a TF Serving gRPC endpoint (``host:port``).

    ``timeout`` is each call's deadline in seconds; ``retries`` more attempts follow an
    ``UNAVAILABLE``/``RESOURCE_EXHAUSTED`` answer, waiting ``backoff * 2**i`` seconds (with
    jitter, at most ``max_backoff``).  ``root_certificates`` (PEM path or bytes) turns on
    TLS; ``server_name`` overrides the name checked in the server's certificate.
    ``channel_options`` are extra gRPC channel arguments, e.g. ``[("grpc.lb_policy_name",
    "round_robin")]`` with a ``dns:///`` address to spread calls over replicas.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.1, max_backoff: float = 2.0, max_message_bytes: int = 64 * 1024 * 1024,
                 root_certificates: str | bytes | Path | None = None, server_name: str | None = None,
                 retry_codes: Iterable[str] = ("UNAVAILABLE", "RESOURCE_EXHAUSTED"),
                 channel_options: Sequence[tuple[str, Any]] = ()) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        if not address or ":" not in address:
            raise ModelError(f"model server address must be host:port, got {address!r}")
        if timeout <= 0 or retries < 0:
            raise ModelError("timeout must be > 0 and retries >= 0")
        self.address, self.timeout, self.retries = address, float(timeout), int(retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.retry_codes = {getattr(grpc.StatusCode, c) for c in retry_codes}
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes), *channel_options]
        if root_certificates is not None:
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            creds = grpc.ssl_channel_credentials(root_certificates=_read_pem(root_certificates))
            self.channel = grpc.secure_channel(address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    # -- calls ------------------------------------------------------------------------------------
    def _call(self, method: Any, request: Any, timeout: float | None, what: str) -> Any:
        import grpc

        timeout = self.timeout if timeout is None else float(timeout)
        start = time.monotonic()
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as e:
                code, details = e.code(), (e.details() or "").strip()
                if code in self.retry_codes and attempt < self.retries:
                    delay = min(self.max_backoff, self.backoff * 2 ** attempt)
                    time.sleep(delay * (0.5 + random.random() / 2))
                    continue
                err = self._error(code, details, what, attempt + 1, time.monotonic() - start, timeout)
                err.grpc_code = code.name  # type: ignore[attr-defined]
                raise err from None
        raise AssertionError("unreachable")

    def _error(self, code: Any, details: str, what: str, attempts: int, elapsed: float, timeout: float) -> Exception:
        import grpc

        where = f"model server at {self.address}"
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServerUnavailable(
                f"no model server answers at {self.address} ({attempts} attempts in {elapsed:.1f} s: {details}); "
                f"start one with `htr serve --repository REPO` or check the address")
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return ModelError(f"{where}: {what}: {details}")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return DataError(f"{where} rejected {what}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServingError(f"{where}: {what} did not finish within {timeout:g} s ({details})")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ServingError(f"{where} is overloaded ({attempts} attempts in {elapsed:.1f} s): {what}: {details}")
        return ServingError(f"{where}: {what} failed with {code.name}: {details}")

    @staticmethod
    def _spec(spec: Any, model: str, version: int | None = None, label: str | None = None,
              signature: str | None = None) -> None:
        spec.name = model
        if version is not None:
            spec.version.value = int(version)
        elif label:
            spec.version_label = label
        if signature:
            spec.signature_name = signature

    def predict(self, model: str, inputs: Mapping[str, Any], signature: str = "serving_default",
                version: int | None = None, version_label: str | None = None,
                output_filter: Sequence[str] | None = None, timeout: float | None = None) -> Prediction:
        """Run ``signature`` of ``model`` on numpy ``inputs``; its outputs as numpy arrays."""
        from tensorflow_serving.apis import predict_pb2

        from htr_tf.serving.tensors import from_tensor_proto, to_tensor_proto

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, version, version_label, signature)
        for k, v in inputs.items():
            to_tensor_proto(v, request.inputs[k])
        if output_filter:
            request.output_filter.extend(output_filter)
        response = self._call(self._prediction.Predict, request, timeout, f"Predict {model}/{signature}")
        out = Prediction({k: from_tensor_proto(t, k) for k, t in response.outputs.items()})
        out.model = response.model_spec.name or model
        out.version = int(response.model_spec.version.value)
        out.signature = response.model_spec.signature_name or signature
        return out

    def model_metadata(self, model: str, version: int | None = None, timeout: float | None = None
                       ) -> tuple[int, dict[str, Any]]:
        """``GetModelMetadata``: (version, ``{signature name: SignatureDef proto}``)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, model, version)
        response = self._call(self._prediction.GetModelMetadata, request, timeout, f"GetModelMetadata {model}")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(sig_map):
            raise ServingError(f"model server at {self.address}: metadata of {model} is not a SignatureDefMap")
        return int(response.model_spec.version.value), dict(sig_map.signature_def)

    def signatures(self, model: str, version: int | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """Each signature's inputs and outputs as ``{name: {"dtype": str, "shape": [..]}}`` (-1: any)."""
        from htr_tf.serving.tensors import dtype_name

        def plain(infos: Any) -> dict[str, dict[str, Any]]:
            return {k: {"dtype": dtype_name(t.dtype),
                        "shape": None if t.tensor_shape.unknown_rank else [d.size for d in t.tensor_shape.dim]}
                    for k, t in infos.items()}

        _, sigs = self.model_metadata(model, version)
        return {k: {"inputs": plain(s.inputs), "outputs": plain(s.outputs)} for k, s in sigs.items()}

    def model_status(self, model: str, version: int | None = None, timeout: float | None = None
                     ) -> list[dict[str, Any]]:
        """``GetModelStatus``: ``[{"version", "state", "error_code", "error_message"}]``."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version)
        response = self._call(self._models.GetModelStatus, request, timeout, f"GetModelStatus {model}")
        State = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": int(s.version), "state": State.Name(s.state), "error_code": int(s.status.error_code),
                 "error_message": s.status.error_message} for s in response.model_version_status]

    def wait_until_available(self, models: Iterable[str], timeout: float = 60.0) -> None:
        """Block until every model has an AVAILABLE version; :class:`ServingError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        pending = list(models)
        last = ""
        while pending:
            try:
                if any(s["state"] == "AVAILABLE" for s in self.model_status(pending[0], timeout=5)):
                    pending.pop(0)
                    continue
            except (ServingError, ModelError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise ServingError(f"model {pending[0]} not available at {self.address} after {timeout:g} s"
                                   + (f": {last}" if last else ""))
            time.sleep(0.1)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- the pipeline backend ----------------------------------------------------------------------------
def _layout_class(kind: str) -> Any:
    """A layout model class whose network runs on the server (``mask`` signature); its numpy
    ``preprocess``/``postprocess``/``detect`` are the in-process model's own."""
    from htr_tf.models.lines import LineDetector
    from htr_tf.models.paragraph import ParagraphModel

    def to_uint8(x: np.ndarray) -> np.ndarray:
        # preprocess gives 1 - canvas/255 in float32; this recovers the uint8 canvas exactly
        # (checked for all 256 values), which is 4x fewer bytes to send
        return np.rint((1.0 - np.asarray(x, np.float32)) * 255.0).astype(np.uint8)

    if kind == "paragraph":
        class GrpcParagraph(ParagraphModel):
            def masks(self, inputs: np.ndarray) -> np.ndarray:
                out = self.backend.client.predict(self.served_as, {"images": to_uint8(inputs)}, "mask",
                                                  output_filter=("mask",))
                return np.asarray(out["mask"], np.float32)

        return GrpcParagraph

    class GrpcLines(LineDetector):
        def mask(self, inputs: np.ndarray) -> np.ndarray:
            out = self.backend.client.predict(self.served_as, {"images": to_uint8(inputs)[None]}, "mask",
                                              output_filter=("mask",))
            return np.asarray(out["mask"], np.float32)[0]

    return GrpcLines


class GrpcBackend(LayoutModelsMixin):
    """:class:`htr_tf.pipeline.Backend` over a model server (see the module docstring)."""

    name = "grpc"

    def __init__(self, client: Client, recognizer: str = "recognizer", paragraph: str | None = "paragraph",
                 lines: str | None = "lines") -> None:
        self.client = client
        self.models = {"recognizer": recognizer, "paragraph": paragraph, "lines": lines}
        self._lock = threading.Lock()
        self.recognizer_version = 0
        self.metadata: dict[str, Any] = {}
        self._refresh()
        self.paragraph = self._layout_model("paragraph") if paragraph else None
        self.lines = self._layout_model("lines") if lines else None

    @classmethod
    def connect(cls, address: str = DEFAULT_ADDRESS, recognizer: str = "recognizer", paragraph: str = "paragraph",
                lines: str = "lines", use_paragraph: bool = True, recognizer_only: bool = False,
                timeout: float = 30.0, retries: int = 3,
                root_certificates: str | bytes | Path | None = None, server_name: str | None = None,
                channel_options: Sequence[tuple[str, Any]] = ()) -> "GrpcBackend":
        """Connect to the server at ``address`` and read the models' metadata.

        ``use_paragraph=False`` skips the handwritten-area model (the whole page is the area);
        ``recognizer_only=True`` uses no layout model (line images).
        """
        client = Client(address, timeout=timeout, retries=retries, root_certificates=root_certificates,
                        server_name=server_name, channel_options=channel_options)
        try:
            return cls(client, recognizer, paragraph if use_paragraph and not recognizer_only else None,
                       None if recognizer_only else lines)
        except Exception:
            client.close()
            raise

    # -- metadata ---------------------------------------------------------------------------------
    def _fetch_metadata(self, model: str, version: int | None = None) -> tuple[dict[str, Any], int]:
        """A model's ``htr.json`` and the version that answered."""
        last: Exception | None = None
        for signature in METADATA_SIGNATURES:
            inputs = {"rows": np.zeros(1, np.int32)} if signature == "metadata_batch" else {}
            try:
                out = self.client.predict(model, inputs, signature, version=version)
            except (ModelError, DataError) as e:
                # FAILED_PRECONDITION: no such signature in this export; INVALID_ARGUMENT: TF Serving
                # with batching refuses a signature without inputs.  Anything else is final.
                if getattr(e, "grpc_code", "") not in ("FAILED_PRECONDITION", "INVALID_ARGUMENT"):
                    raise
                last = e
                continue
            raw = np.asarray(out["json"]).reshape(-1)[0]
            try:
                meta = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ModelError(f"model server at {self.client.address}: {model} returned corrupt metadata: {e}") from None
            if not isinstance(meta, dict):
                raise ModelError(f"model server at {self.client.address}: {model} returned metadata that is not an object")
            return meta, out.version
        raise ModelError(f"model server at {self.client.address}: cannot read the metadata of {model!r}: {last}")

    def _layout_model(self, kind: str) -> Any:
        """The served ``kind`` model as its in-process class with the network on the server."""
        from htr_tf.errors import ConfigError
        from htr_tf.models.lines import LineDetectorConfig
        from htr_tf.models.paragraph import ParagraphConfig

        model = self.models[kind]
        meta, _ = self._fetch_metadata(model)
        if meta.get("kind") != kind:
            raise ModelError(f"model server at {self.client.address}: model {model!r} is a "
                             f"{meta.get('kind')!r} model, expected {kind!r}")
        cls = _layout_class(kind)
        try:
            config = (ParagraphConfig if kind == "paragraph" else LineDetectorConfig).from_dict(meta["config"])
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ModelError(f"model server at {self.client.address}: bad metadata in {model!r}: {e}") from None
        obj = cls(None, config, dict(meta.get("info") or {}))
        obj.backend, obj.served_as = self, model
        return obj

    def _refresh(self) -> None:
        """(Re)read the recogniser's metadata and pin the version it came from."""
        from htr_tf.charset import Charset
        from htr_tf.geometry import LineGeometry
        from htr_tf.models.recognizer import RecognizerConfig

        model = self.models["recognizer"]
        meta, version = self._fetch_metadata(model)
        if meta.get("kind") != "recognizer":
            raise ModelError(f"model server at {self.client.address}: model {model!r} is a {meta.get('kind')!r} "
                             f"model, expected a recognizer")
        try:
            charset = Charset.from_dict(meta["charset"])
            geometry = LineGeometry.from_dict(meta["geometry"])
            downsample = RecognizerConfig.from_dict(meta["config"]).width_downsample()
        except Exception as e:  # KeyError, TypeError, ValueError, ConfigError from a foreign export
            raise ModelError(f"model server at {self.client.address}: bad metadata in {model!r} "
                             f"version {version}: {e}") from None
        with self._lock:
            self.metadata, self.recognizer_version = meta, version
            self.charset, self.geometry, self.width_downsample = charset, geometry, downsample

    @property
    def decoding(self) -> dict[str, Any]:
        """The served recogniser's tuned decoder settings (its htr.json ``decoding``; {} when none)."""
        with self._lock:
            return dict(self.metadata.get("decoding") or {})

    # -- the Backend protocol ---------------------------------------------------------------------
    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(images, np.uint8)
        widths = np.asarray(widths, np.int32).reshape(-1)
        for attempt in range(2):
            with self._lock:
                version, geometry = self.recognizer_version, self.geometry
            try:
                out = self.client.predict(self.models["recognizer"], {"images": images, "widths": widths},
                                          "recognize", version=version, output_filter=("log_probs", "lengths"))
                return np.asarray(out["log_probs"], np.float32), np.asarray(out["lengths"], np.int32)
            except ModelError as e:
                if attempt or getattr(e, "grpc_code", "") != "NOT_FOUND":
                    raise
            self._refresh()    # the pinned version was unloaded (a new one is served): read its metadata
            if self.geometry != geometry:
                raise ModelError(f"the served recognizer changed to version {self.recognizer_version} with another "
                                 f"line geometry while a page was running; run the page again")
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()
