"""Serving: the TF Serving model repository, the embedded TF-Serving-compatible gRPC server
(``htr serve``) and the gRPC client with its pipeline backend.

* :mod:`htr_tf.serving.repository`: ``write_repository`` (``htr export repository``), the
  ``models.config``/``batching.config``/``monitoring.config`` texts and their parsers.
* :mod:`htr_tf.serving.server`: ``serve`` / ``ModelServer`` (PredictionService, ModelService).
* :mod:`htr_tf.serving.client`: ``Client`` and ``GrpcBackend`` (``make_backend("grpc", ...)``).

Names are imported on first use, so ``import htr_tf.serving`` needs neither gRPC nor TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Client", "GrpcBackend", "Prediction", "ServingError", "ServerUnavailable", "ModelServer",
           "ServerOptions", "serve", "run_until_signalled", "write_repository", "check_repository"]

_WHERE = {
    "Client": "client", "GrpcBackend": "client", "Prediction": "client", "ServingError": "client",
    "ServerUnavailable": "client", "ModelServer": "server", "ServerOptions": "server", "serve": "server",
    "run_until_signalled": "server", "write_repository": "repository", "check_repository": "repository",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'htr_tf.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"htr_tf.serving.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
