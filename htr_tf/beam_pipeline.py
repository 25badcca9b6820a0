"""Batch OCR on Apache Beam: the same pages, names, resume rule and error records as
``htr ocr --out`` (:mod:`htr_tf.batch`), on any Beam runner (Direct, Dataflow, Flink, Spark).

The pipeline::

    inputs -> match files (FileSystems) -> group by output name (refuses clashes; spreads the pages)
           -> read (skips pages whose output exists; refuses unreadable / too large files)
           -> RunInference(PageModelHandler): decode, page pipeline, render
           -> write OUT/NAME.SUFFIX (temporary name, then rename)
           -> OUT/index.jsonl (one record per page: done, no-text, skipped, failed)
              OUT/errors.jsonl (the failed and no-text records)

:class:`PageModelHandler` is a RunInference ``ModelHandler``: each worker process builds the
page pipeline (loads the models) once and its threads share it.  Every file goes through
Beam's ``FileSystems``, so ``gs://`` and ``s3://`` paths work where Beam's ``gcp`` / ``aws``
extras are installed.  ``index.jsonl`` and ``errors.jsonl`` describe the latest run (object
stores cannot append; ``htr ocr`` appends to ``errors.jsonl`` instead).

Needs the ``beam`` extra (``pip install "htr-tf[beam]"``); this module imports apache_beam.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from htr_tf.batch import (ERRORS_FILE, PageTask, check_file_size, failure_reason, is_image_name, page_record,
                          pattern_base, recognize_page, relative_name)
from htr_tf.errors import ConfigError

__all__ = ["INDEX_FILE", "InputSpec", "input_specs", "PageModelHandler", "build_pipeline", "check_output",
           "write_atomically"]

#: One record per page of the latest run, in the output directory.
INDEX_FILE = "index.jsonl"
_NS = "htr"


def _is_remote(path: str) -> bool:
    return "://" in path


def _join(base: str, name: str) -> str:
    return FileSystems.join(base, name) if base else name


# -- inputs ---------------------------------------------------------------------------------------
class InputSpec(NamedTuple):
    """A pattern to match, the directory output names are relative to, and whether matches
    are filtered by image suffix (not for a file named explicitly)."""

    pattern: str
    base: str
    only_images: bool


def input_specs(inputs: Sequence[str]) -> list[InputSpec]:
    """What each ``--input`` means: a glob pattern, a single file, or a directory (all the
    images below it).  Local directories are told apart with the file system; a remote path
    without wildcards is a file when an object of that exact name exists, else a folder."""
    import glob as _glob

    specs = []
    for spec in inputs:
        if _glob.has_magic(spec):
            specs.append(InputSpec(spec, pattern_base(spec), True))
            continue
        if _is_remote(spec):
            exact = [m.path for r in FileSystems.match([spec]) for m in r.metadata_list] if FileSystems.exists(spec) else []
            is_file = spec in exact
        else:
            is_file = not os.path.isdir(spec)
        if is_file:
            specs.append(InputSpec(spec, posixpath.dirname(spec.replace(os.sep, "/")), False))
        else:
            specs.append(InputSpec(_join(spec.rstrip("/"), "**"), spec.rstrip("/"), True))
    return specs


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


class _MatchPages(beam.DoFn):
    """An :class:`InputSpec` -> (output name, (PageTask, size)) for every page it matches."""

    def __init__(self, exclude: Sequence[str]) -> None:
        self._exclude = [e.rstrip("/") + "/" for e in exclude]

    def process(self, spec: InputSpec) -> Iterator[tuple[str, tuple[PageTask, int]]]:
        pattern, base, only_images = spec
        try:
            metadata = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # noqa: BLE001 - nothing matched (Beam raises for an empty match)
            metadata = []
        n = 0
        for m in sorted(metadata, key=lambda m: m.path):
            path = m.path
            rel = path[len(base):].lstrip("/") if base and path.startswith(base) else posixpath.basename(path)
            if only_images and (not is_image_name(path) or _hidden(rel)):
                continue
            if any(path.startswith(e) for e in self._exclude):
                continue
            if not only_images and path != pattern:
                continue
            n += 1
            task = PageTask(path, relative_name(path, base))
            yield task.name, (task, m.size_in_bytes)
        if not n and not only_images:                  # a named file that is not there
            task = PageTask(pattern, relative_name(pattern, base))
            yield task.name, (task, -1)


def _one_per_name(item: tuple[str, Iterable[tuple[PageTask, int]]], suffix: str) -> Iterator[Any]:
    """Pages grouped by output name: one page goes on; two different files with one name
    both fail (neither could be written without losing the other)."""
    _name, group = item
    distinct = {t.source: (t, size) for t, size in group}
    if len(distinct) == 1:
        yield next(iter(distinct.values()))
        return
    sources = sorted(distinct)
    for t, _size in distinct.values():
        yield beam.pvalue.TaggedOutput("records", page_record(
            t, suffix, "failed", f"{len(sources)} inputs would write the same output name: {' and '.join(sources)}"))


# -- reading, recognising, writing ----------------------------------------------------------------
class _ReadPage(beam.DoFn):
    """(PageTask, size) -> (PageTask, bytes), or a skipped / failed record (tag ``records``)."""

    def __init__(self, output: str, suffix: str, overwrite: bool) -> None:
        self._output, self._suffix, self._overwrite = output, suffix, overwrite

    def process(self, item: tuple[PageTask, int]) -> Iterator[Any]:
        task, size = item
        target = _join(self._output, task.output(self._suffix))
        if not self._overwrite and FileSystems.exists(target):
            Metrics.counter(_NS, "skipped").inc()
            yield beam.pvalue.TaggedOutput("records", page_record(task, self._suffix, "skipped"))
            return
        try:
            if size < 0:
                raise FileNotFoundError(task.source)
            check_file_size(size, task.source)
            with FileSystems.open(task.source, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
        except FileNotFoundError:
            yield self._failed(task, f"{task.source}: no such file")
            return
        except Exception as e:  # noqa: BLE001 - one bad page never stops the batch
            yield self._failed(task, failure_reason(e))
            return
        yield task, data

    def _failed(self, task: PageTask, reason: str) -> Any:
        Metrics.counter(_NS, "failed").inc()
        return beam.pvalue.TaggedOutput("records", page_record(task, self._suffix, "failed", reason))


class PageModelHandler(ModelHandler):
    """RunInference's handler for pages: ``load_model`` builds the page pipeline once per
    worker process (threads share it); ``run_inference`` turns (PageTask, image bytes) into
    (PageTask, rendered text or None, record).  A page that cannot be read gives a ``failed``
    record, never an exception, so one bad page does not fail a bundle.

    ``factory`` builds the pipeline (picklable: a module-level function or a partial of one);
    ``threads`` limits TensorFlow's and OpenCV's threads in each worker (None: their default).
    """

    def __init__(self, factory: Callable[[], Any], fmt: str, threads: int | None = None) -> None:
        super().__init__(max_batch_size=1)     # a page is a batch: the pipeline batches its lines
        self._factory, self._fmt, self._threads = factory, fmt, threads

    def load_model(self) -> Any:
        if self._threads:
            from htr_tf.batch import limit_threads

            limit_threads(self._threads)
        return self._factory()

    def run_inference(self, batch: Sequence[tuple[PageTask, bytes]], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[tuple[PageTask, str | None, dict]]:
        from htr_tf.outputs import SUFFIXES

        suffix = SUFFIXES[self._fmt]
        out = []
        for task, data in batch:
            try:
                text, result, _gray = recognize_page(model, data, task.source, self._fmt)
            except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
                out.append((task, None, page_record(task, suffix, "failed", failure_reason(e))))
                continue
            if result.warnings:
                rec = page_record(task, suffix, "no-text", "; ".join(result.warnings), lines=0, pid=os.getpid())
            else:
                rec = page_record(task, suffix, "done", lines=len(result.lines), pid=os.getpid())
            out.append((task, text, rec))
        return out

    def get_num_bytes(self, batch: Sequence[tuple[PageTask, bytes]]) -> int:
        return sum(len(data) for _task, data in batch)

    def get_metrics_namespace(self) -> str:
        return "htr_pages"


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through FileSystems: a temporary name beside it, then a
    rename, so ``path`` is either absent or whole (on object stores an object appears whole
    when closed; the rename keeps local and mounted file systems the same)."""
    directory, name = posixpath.split(path) if _is_remote(path) else os.path.split(path)
    tmp = _join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    try:
        FileSystems.rename([tmp], [path])
    except Exception:
        FileSystems.delete([tmp])
        raise


class _WriteOutput(beam.DoFn):
    """(PageTask, text, record) -> the page's output file; yields the record."""

    def __init__(self, output: str) -> None:
        self._output = output

    def process(self, item: tuple[PageTask, str | None, dict]) -> Iterator[dict]:
        task, text, rec = item
        if text is not None:
            write_atomically(_join(self._output, rec["output"]), text.encode("utf-8"))
        Metrics.counter(_NS, rec["status"]).inc()
        yield rec


# -- the pipeline ---------------------------------------------------------------------------------
def check_output(output: str) -> None:
    """Prove ``output`` can be written before any page is read; :class:`ConfigError` if not."""
    if not _is_remote(output):
        from htr_tf.batch import check_output_dir

        check_output_dir(output)
        return
    probe = _join(output, f".htr-write-test.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with FileSystems.create(probe) as f:
            f.write(b"")
        FileSystems.delete([probe])
    except Exception as e:  # noqa: BLE001 - any failure means the output cannot be used
        raise ConfigError(f"cannot write to the output directory {output}: {e}") from None


def build_pipeline(p: beam.Pipeline, inputs: Sequence[str], output: str, factory: Callable[[], Any],
                   fmt: str = "text", overwrite: bool = False, threads: int | None = None) -> beam.PCollection:
    """Add the batch OCR transforms to ``p``; returns the PCollection of page records."""
    from htr_tf.outputs import FORMATS, SUFFIXES

    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    suffix = SUFFIXES[fmt]
    output = output.rstrip("/") if _is_remote(output) else os.path.abspath(output)
    specs = [InputSpec(*(os.path.abspath(x) if i < 2 and not _is_remote(x) and x else x for i, x in enumerate(s)))
             for s in input_specs(inputs)]
    pages = (p | "Inputs" >> beam.Create(specs)
             | "Match" >> beam.ParDo(_MatchPages([output]))
             | "ByName" >> beam.GroupByKey()
             | "OnePerName" >> beam.FlatMap(_one_per_name, suffix).with_outputs("records", main="pages"))
    read = (pages.pages
            | "Read" >> beam.ParDo(_ReadPage(output, suffix, overwrite)).with_outputs("records", main="pages"))
    written = (read.pages
               | "Recognise" >> RunInference(PageModelHandler(factory, fmt, threads))
               | "Write" >> beam.ParDo(_WriteOutput(output)))
    records = (pages.records, read.records, written) | "Records" >> beam.Flatten()
    (records
     | "IndexJson" >> beam.Map(json.dumps, ensure_ascii=False)
     | "Index" >> beam.io.WriteToText(_join(output, INDEX_FILE), shard_name_template="", num_shards=1))
    (records
     | "Problems" >> beam.Filter(lambda r: r["status"] in ("failed", "no-text"))
     | "ErrorsJson" >> beam.Map(json.dumps, ensure_ascii=False)
     | "Errors" >> beam.io.WriteToText(_join(output, ERRORS_FILE), shard_name_template="", num_shards=1))
    return records


def counts(result: Any) -> dict[str, int]:
    """The page counts a finished run reported (``done``, ``no-text``, ``skipped``, ``failed``)."""
    from apache_beam.metrics.metric import MetricsFilter

    out = {"done": 0, "no-text": 0, "skipped": 0, "failed": 0}
    for c in result.metrics().query(MetricsFilter().with_namespace(_NS))["counters"]:
        name = c.key.metric.name
        if name in out:
            value = c.committed if c.committed is not None else c.attempted
            out[name] += int(value or 0)
    return out
