"""The TF Serving model repository: ``NAME/VERSION/saved_model.pb`` plus its three configs.

``write_repository`` exports the recogniser, the handwritten-area model and the line
detector (each with its named signatures, see :mod:`htr_tf.export`,
:func:`htr_tf.models.paragraph.export_paragraph`, :func:`htr_tf.models.lines.export_lines`)
into TF Serving's layout.  It writes, when absent:

``models.config``
    ``ModelServerConfig`` (built as the protobuf message and written with ``text_format``):
    one ``model_config_list`` entry per model, base path ``/models/NAME`` (where
    ``Dockerfile.serving`` copies the repository), serving the latest version.
``batching.config``
    ``BatchingParameters`` for ``--batching_parameters_file``.  The server runs with
    ``--enable_per_model_batching_parameters``: TF Serving's batching concatenates every
    input along dimension 0, which suits the recogniser (lines ``[B, H, W]``, padded to
    the widest with ``pad_variable_length_inputs``; the ``widths`` input keeps the padding
    out of the result) but not the layout models, whose ``detect`` signatures take one page
    ``[H, W]``.  So only ``recognizer/N/batching_params.pbtxt`` (the same parameters)
    turns batching on, for the recogniser alone; from this file TF Serving then takes the
    shared thread pool settings only.
``monitoring.config``
    ``MonitoringConfig``: Prometheus metrics on the REST port.

The same texts are committed under ``serving/`` (a test keeps them equal).  Configs are
checked by parsing them with the ``tensorflow_serving.config`` protos; the batching and
monitoring messages are not in the ``tensorflow-serving-api`` wheel, so their descriptors
are declared here with TF Serving's field names and numbers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from htr_tf.errors import ConfigError
from htr_tf.fileio import atomic_write_text

__all__ = ["MODEL_KINDS", "CONFIG_FILES", "CONTAINER_ROOT", "BATCHING_PARAMS_FILE", "ModelEntry",
           "models_config_text", "BATCHING_CONFIG_TEXT", "MONITORING_CONFIG_TEXT", "parse_models_config",
           "parse_batching_config", "parse_monitoring_config", "read_model_entries", "available_versions",
           "aspired_versions", "write_repository", "check_repository"]

#: The exported models, by name (the name is also the kind of model).
MODEL_KINDS = ("recognizer", "paragraph", "lines")
CONFIG_FILES = ("models.config", "batching.config", "monitoring.config")
#: Where the repository lives inside the serving image (``Dockerfile.serving``).
CONTAINER_ROOT = "/models"
#: TF Serving's per-model batching file, inside a version directory.
BATCHING_PARAMS_FILE = "batching_params.pbtxt"
#: Models TF Serving batches (their signatures have a batch dimension first).
BATCHED_MODELS = ("recognizer",)

_HEADER = "# Written by `htr export repository` (htr_tf/serving/repository.py); see serving/README.md.\n"


def models_config_text(names: Iterable[str] = MODEL_KINDS, root: str = CONTAINER_ROOT, num_versions: int = 1) -> str:
    """``ModelServerConfig`` text: each model under ``root/NAME``, the latest ``num_versions`` served."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = f"{root.rstrip('/')}/{name}"
        entry.model_platform = "tensorflow"
        entry.model_version_policy.latest.num_versions = num_versions
    return (_HEADER + "# TF Serving model config (--model_config_file): one entry per model; a new numbered\n"
            "# version directory under base_path is picked up and the older one unloaded.\n"
            + text_format.MessageToString(config))


BATCHING_CONFIG_TEXT = _HEADER + """\
# TF Serving batching (--enable_batching --batching_parameters_file). With
# --enable_per_model_batching_parameters only the thread pool settings below are taken from this
# file; the recogniser's version directory holds the same parameters in batching_params.pbtxt and
# the layout models (one page per request, no batch dimension) are not batched.
# Lines of different widths are padded to the widest in the batch; the `widths` input keeps the
# padding out of the log-probabilities.
max_batch_size { value: 64 }
batch_timeout_micros { value: 5000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
pad_variable_length_inputs: true
"""

MONITORING_CONFIG_TEXT = _HEADER + """\
# TF Serving monitoring (--monitoring_config_file): Prometheus metrics on the REST port (8501).
prometheus_config {
  enable: true
  path: "/monitoring/prometheus/metrics"
}
"""


# -- parsing the configs with the tensorflow_serving protos -----------------------------------------
def _parse(text: str, message: Any, where: str) -> Any:
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ConfigError(f"{where}: not a valid {message.DESCRIPTOR.name} config: {e}") from None


def parse_models_config(text: str, where: str = "models.config") -> Any:
    """``models.config`` text -> ``tensorflow.serving.ModelServerConfig`` (checked)."""
    from tensorflow_serving.config import model_server_config_pb2

    config = _parse(text, model_server_config_pb2.ModelServerConfig(), where)
    if config.WhichOneof("config") != "model_config_list" or not config.model_config_list.config:
        raise ConfigError(f"{where}: no model_config_list entries")
    names = [c.name for c in config.model_config_list.config]
    for c in config.model_config_list.config:
        if not c.name or not c.base_path:
            raise ConfigError(f"{where}: every model needs a name and a base_path")
        if c.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{where}: model {c.name!r} has platform {c.model_platform!r}, not 'tensorflow'")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: models listed twice: {', '.join(dupes)}")
    return config


_EXTRA_CLASSES: dict[str, Any] = {}


def _extra_message(name: str) -> Any:
    """``BatchingParameters`` / ``MonitoringConfig``: TF Serving's messages, declared here
    (same package, field names and numbers) because the API wheel does not ship them."""
    if not _EXTRA_CLASSES:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

        FD = descriptor_pb2.FieldDescriptorProto
        pool = descriptor_pool.DescriptorPool()
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(wrappers_pb2.DESCRIPTOR.serialized_pb))
        f = descriptor_pb2.FileDescriptorProto(name="htr_tf/tensorflow_serving_extra.proto",
                                               package="tensorflow.serving", syntax="proto3",
                                               dependency=["google/protobuf/wrappers.proto"])

        def add(msg, fname, number, ftype, type_name="", repeated=False):
            fd = msg.field.add(name=fname, number=number, type=ftype,
                               label=FD.LABEL_REPEATED if repeated else FD.LABEL_OPTIONAL)
            if type_name:
                fd.type_name = type_name

        b = f.message_type.add(name="BatchingParameters")
        for fname, number in (("max_batch_size", 1), ("batch_timeout_micros", 2), ("max_enqueued_batches", 3),
                              ("num_batch_threads", 4), ("max_execution_batch_size", 9)):
            add(b, fname, number, FD.TYPE_MESSAGE, ".google.protobuf.Int64Value")
        add(b, "thread_pool_name", 5, FD.TYPE_MESSAGE, ".google.protobuf.StringValue")
        add(b, "allowed_batch_sizes", 6, FD.TYPE_INT64, repeated=True)
        add(b, "pad_variable_length_inputs", 7, FD.TYPE_BOOL)
        add(b, "enable_large_batch_splitting", 8, FD.TYPE_MESSAGE, ".google.protobuf.BoolValue")
        p = f.message_type.add(name="PrometheusConfig")
        add(p, "enable", 1, FD.TYPE_BOOL)
        add(p, "path", 2, FD.TYPE_STRING)
        m = f.message_type.add(name="MonitoringConfig")
        add(m, "prometheus_config", 1, FD.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
        pool.Add(f)
        for n in ("BatchingParameters", "MonitoringConfig"):
            _EXTRA_CLASSES[n] = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))
    return _EXTRA_CLASSES[name]()


def parse_batching_config(text: str, where: str = "batching.config") -> Any:
    """Batching config text -> ``tensorflow.serving.BatchingParameters`` (checked)."""
    params = _parse(text, _extra_message("BatchingParameters"), where)
    if params.HasField("max_batch_size") and params.max_batch_size.value < 1:
        raise ConfigError(f"{where}: max_batch_size must be >= 1")
    sizes = list(params.allowed_batch_sizes)
    if sizes and (sizes != sorted(sizes) or sizes[-1] != params.max_batch_size.value):
        raise ConfigError(f"{where}: allowed_batch_sizes must increase and end at max_batch_size")
    return params


def parse_monitoring_config(text: str, where: str = "monitoring.config") -> Any:
    """Monitoring config text -> ``tensorflow.serving.MonitoringConfig``."""
    return _parse(text, _extra_message("MonitoringConfig"), where)


# -- reading a repository --------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """One model of ``models.config``, resolved to a directory on this machine."""

    name: str
    path: Path
    #: ``("latest", n)``, ``("all",)`` or ``("specific", (v1, v2, ...))``.
    policy: tuple = ("latest", 1)
    labels: dict[str, int] = field(default_factory=dict)


def read_model_entries(config_file: str | os.PathLike, repository: str | os.PathLike | None = None
                       ) -> list[ModelEntry]:
    """The models of a ``models.config``.

    With ``repository``, a base path names a directory of the repository by its last part
    (``/models/recognizer`` -> ``REPOSITORY/recognizer``): the repository stands where the
    image mounts it.  Without, relative base paths are taken from the config's directory.
    """
    config_file = Path(config_file)
    if not config_file.is_file():
        raise ConfigError(f"{config_file}: no such model config")
    config = parse_models_config(config_file.read_text(encoding="utf-8"), str(config_file))
    out = []
    for c in config.model_config_list.config:
        base = Path(c.base_path)
        if repository is not None:
            path = Path(repository) / base.name
        else:
            path = base if base.is_absolute() else config_file.parent / base
        which = c.model_version_policy.WhichOneof("policy_choice")
        if which == "all":
            policy: tuple = ("all",)
        elif which == "specific":
            versions = tuple(sorted(int(v) for v in c.model_version_policy.specific.versions))
            if not versions:
                raise ConfigError(f"{config_file}: model {c.name!r}: a specific version policy needs versions")
            policy = ("specific", versions)
        else:
            n = c.model_version_policy.latest.num_versions if which == "latest" else 1
            policy = ("latest", max(1, int(n)))
        out.append(ModelEntry(c.name, path, policy, {k: int(v) for k, v in c.version_labels.items()}))
    return out


def available_versions(model_dir: str | os.PathLike) -> list[int]:
    """Version numbers under ``model_dir`` that hold a ``saved_model.pb``, ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    out = []
    for p in model_dir.iterdir():
        if p.name.isdigit() and (p / "saved_model.pb").is_file():
            out.append(int(p.name))
    return sorted(out)


def aspired_versions(entry: ModelEntry, available: list[int]) -> list[int]:
    """The versions ``entry``'s policy serves out of ``available`` (as TF Serving chooses them)."""
    kind = entry.policy[0]
    if kind == "all":
        return sorted(available)
    if kind == "specific":
        return sorted(v for v in available if v in entry.policy[1])
    return sorted(available)[-entry.policy[1]:]


# -- writing a repository --------------------------------------------------------------------------
def _load(kind: str, path: str | os.PathLike | None) -> Any:
    from htr_tf.bundle import require_bundled

    if path is None or str(path) == "bundled":
        path = require_bundled(kind)
    if kind == "recognizer":
        from htr_tf.models.recognizer import Recognizer

        return Recognizer.load(path)
    if kind == "paragraph":
        from htr_tf.models.paragraph import ParagraphModel

        return ParagraphModel.load(path)
    from htr_tf.models.lines import LineDetector

    return LineDetector.load(path)


def _exporter(kind: str):
    if kind == "recognizer":
        from htr_tf.export import export_recognizer

        return export_recognizer
    if kind == "paragraph":
        from htr_tf.models.paragraph import export_paragraph

        return export_paragraph
    from htr_tf.models.lines import export_lines

    return export_lines


def _next_version(model_dir: Path) -> int:
    existing = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    return max(existing, default=0) + 1


def write_repository(out: str | os.PathLike, version: int | None = None, recognizer: Any = None,
                     paragraph: Any = None, lines: Any = None, models: Iterable[str] = MODEL_KINDS,
                     log: Any = None) -> dict[str, int]:
    """Export ``models`` into the repository ``out``; returns ``{name: version written}``.

    ``recognizer``/``paragraph``/``lines`` are bundle directories or loaded models (None:
    the bundled ones).  ``version`` None
    takes one more than the model's highest version (1 in a new repository); an existing
    version is never overwritten, because a running server would not reload it.  Each
    version is exported into a hidden staging directory (ignored by TF Serving and
    ``htr serve``) and renamed into place complete, batching file included.  The three
    configs are written when absent and kept when present (edit them to change the
    version policy).
    """
    out = Path(out)
    models = list(models)
    unknown = [m for m in models if m not in MODEL_KINDS]
    if unknown or not models:
        raise ConfigError(f"unknown models {unknown}; choose from {', '.join(MODEL_KINDS)}")
    if version is not None and version < 1:
        raise ConfigError(f"version must be >= 1, got {version}")
    sources = {"recognizer": recognizer, "paragraph": paragraph, "lines": lines}
    plan = {}
    for kind in MODEL_KINDS:
        if kind not in models:
            continue
        v = version if version is not None else _next_version(out / kind)
        if (out / kind / str(v)).exists():
            raise ConfigError(f"{out / kind / str(v)} exists; a running server would not reload it: "
                              f"export as another version (default: the next one)")
        plan[kind] = v
    written = {}
    for kind, v in plan.items():
        final = out / kind / str(v)
        staging = out / kind / f".{v}.staging-{uuid.uuid4().hex[:8]}"
        try:
            src = sources[kind]
            model = src if src is not None and not isinstance(src, (str, os.PathLike)) else _load(kind, src)
            _exporter(kind)(model, staging)
            if kind in BATCHED_MODELS:
                atomic_write_text(staging / BATCHING_PARAMS_FILE, BATCHING_CONFIG_TEXT)
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        written[kind] = v
        if log:
            log(f"exported {kind} version {v} -> {final}")
    present = [k for k in MODEL_KINDS if available_versions(out / k)]
    texts = {"models.config": models_config_text(present), "batching.config": BATCHING_CONFIG_TEXT,
             "monitoring.config": MONITORING_CONFIG_TEXT}
    for name, text in texts.items():
        if not (out / name).exists():
            atomic_write_text(out / name, text)
        elif log:
            log(f"kept the existing {out / name}")
    return written


def check_repository(repo: str | os.PathLike) -> list[ModelEntry]:
    """Parse a repository's three configs and check every model has a servable version.

    Returns the models; :class:`ConfigError` names the first problem.
    """
    repo = Path(repo)
    for name in CONFIG_FILES:
        if not (repo / name).is_file():
            raise ConfigError(f"{repo}: {name} is missing")
    parse_batching_config((repo / "batching.config").read_text(encoding="utf-8"), str(repo / "batching.config"))
    parse_monitoring_config((repo / "monitoring.config").read_text(encoding="utf-8"), str(repo / "monitoring.config"))
    entries = read_model_entries(repo / "models.config", repository=repo)
    for e in entries:
        versions = available_versions(e.path)
        if not aspired_versions(e, versions):
            raise ConfigError(f"{e.path}: no version of model {e.name!r} to serve (found {versions or 'none'})")
        for v in versions:
            pbtxt = e.path / str(v) / BATCHING_PARAMS_FILE
            if pbtxt.exists():
                parse_batching_config(pbtxt.read_text(encoding="utf-8"), str(pbtxt))
    return entries
