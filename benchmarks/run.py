"""Run every benchmark of the repository and collect one JSON and one Markdown table.

    python benchmarks/run.py [--quick] [--out DIR] [--only NAMES] [--skip NAMES]
                             [--synth-records DIR] [--gw-records DIR] [--make-data]
    htr bench ...                                   # the same, through the CLI

Each benchmark runs as its own subprocess (``python SCRIPT ARGS``) with bounded sizes
(``--quick``: small sizes for a smoke run of a few minutes) and a time limit; its stdout is
parsed as JSON (one document, or one JSON object per line).  A benchmark whose script is
missing, fails, times out or prints no JSON becomes an ``error`` entry: the suite goes on.
Scripts ``bench_*.py`` that the table below does not know yet are run too, with their
defaults (plus ``--quick`` when their ``--help`` offers it).

Accuracy entries run ``htr evaluate pipeline`` (line level and page level, several
decoders) on form record sets: ``--synth-records`` (split test) and ``--gw-records``
(split validation: GW pages 278-279); without a record set the entry is ``skipped``.
``--make-data`` makes the record sets not given into a cache folder first
(``benchmarks/bench_data.py``: ``htr data synth --pages 400 --seed 1`` + ``iam-prepare``,
and GW's pages when ``../shared/data/gw`` is present), so a fresh checkout runs everything.

``OUT/bench.json`` holds the machine (CPU model, cores, RAM, load average before and
after, TensorFlow version, date, git commit) and every entry; ``OUT/bench.md`` the tables;
``OUT/logs/`` every benchmark's stdout/stderr; ``OUT/reports/`` the HTML evaluation reports.
The original system's published numbers appear in the Markdown only as a labelled reference.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
FORMAT_VERSION = 1


@dataclass
class Bench:
    """One benchmark: a script under the benchmark directory with full and quick arguments."""

    name: str
    script: str
    full: list[str] = field(default_factory=list)
    #: ``None``: ``--quick`` when the script's ``--help`` offers it, else no arguments.
    quick: list[str] | None = None
    timeout: float = 1800.0
    quick_timeout: float = 300.0
    what: str = ""
    #: Arguments may name record sets as ``{synth_records}`` / ``{gw_records}``; when one is not
    #: given, these arguments replace the full (and quick) ones instead.
    without_records: list[str] | None = None


@dataclass
class Evaluation:
    """``htr evaluate pipeline`` on a record set (accuracy, page seconds by stage)."""

    name: str
    records_option: str            # the run.py option naming the record set
    split: str
    decoders: str
    quick_decoders: str
    limit: int | None = None
    quick_limit: int | None = 3
    timeout: float = 3600.0
    quick_timeout: float = 600.0
    what: str = ""


#: Known benchmarks and the sizes they run at (see each script's docstring for its options).
BENCHES: list[Bench] = [
    Bench("recognizer", "bench_recognizer.py", ["--rounds", "7"], ["--rounds", "1", "--no-train-speed"],
          what="recogniser parameters, FLOPs, inference and training lines/s on random lines"),
    Bench("decoders", "bench_decoders.py", ["--lines", "500", "--beams", "10,50,100", "--char-beams", "10,50"],
          ["--lines", "40", "--beams", "10", "--char-beams", "10", "--workers", "1", "--no-pyctcdecode"],
          what="CTC decoders (greedy, beam+lm, beam+charlm, lexicon) on synthetic posteriors: speed, CER/WER"),
    Bench("decode", "bench_decode.py", [], ["64"], what="greedy and prefix beam search speed/CER, synthetic posteriors"),
    Bench("layout", "bench_layout.py", ["--records", "{synth_records}", "--split", "test", "--pages", "10",
                                         "--repeats", "3"], ["--pages", "2", "--repeats", "2"],
          what="paragraph + line detection ms per page by stage (and recall/precision with records)",
          without_records=["--pages", "10", "--repeats", "3"]),
    Bench("page", "bench_page.py", ["--records", "{synth_records}", "--split", "test", "--pages", "20"],
          ["--records", "{synth_records}", "--split", "test", "--pages", "3"],
          what="full page pipeline seconds per page by stage (area, lines, recognize, decode)",
          without_records=["htr_tf/assets/examples/page-1.png", "--repeat", "3"]),
    Bench("data_pipeline", "bench_pipeline.py", ["--lines", "2000", "--both"], ["--lines", "200", "--epochs", "1"],
          what="tf.data line input pipeline lines/s with and without augmentation"),
    Bench("synth", "bench_synth.py", ["--pages", "20"], ["--pages", "2"],
          what="synthetic IAM-format form generation pages/s on one core"),
    Bench("synth_v2", "bench_synth_v2.py", ["--lines", "300", "--pages", "4"], ["--lines", "20", "--pages", "1"],
          what="synthetic v2 handwriting (fonts + pen simulator + paper): line records lines/s and "
               "IAM-format v2 forms pages/s on one core"),
    Bench("tflite", "bench_tflite.py",
          ["--synth", "{synth_records}", "--gw", "{gw_records}", "--calibration", "{synth_records}",
           "--limit", "300", "--layout", "--pages", "10"],
          ["--synth", "{synth_records}", "--gw", "{gw_records}", "--calibration", "{synth_records}",
           "--limit", "20", "--modes", "none", "dynamic", "--warmup", "2"],
          timeout=3600.0, quick_timeout=600.0,
          what="TFLite per quantisation vs Keras and SavedModel: size, ms per line (one thread), CER"),
    Bench("robustness", "bench_robustness.py", ["--data", "{gw_records}", "--split", "validation"],
          ["--data", "{gw_records}", "--split", "validation", "--limit", "20", "--pads", "0,1",
           "--fades", "200:130", "--rotations", "2"],
          what="greedy CER of lines as cut, with blank margins added (trimming on and off), faded ink, rotated"),
    Bench("serving", "bench_serving.py", ["--n-pages", "4", "--clients", "1,4,16"],
          ["--n-pages", "2", "--clients", "1,4", "--pages-per-level", "4", "--seconds", "30"],
          timeout=3600.0, quick_timeout=600.0,
          what="page pipeline over gRPC (htr serve) vs in process: pages/s and latency per client count"),
]

EVALUATIONS: list[Evaluation] = [
    Evaluation("accuracy_synth", "synth_records", "test", "greedy,beam,beam+lm,beam+charlm", "greedy,beam+lm",
               limit=None, quick_limit=3, what="bundled models on synthetic IAM-format test pages"),
    Evaluation("accuracy_gw", "gw_records", "validation", "greedy,beam,beam+lm,beam+charlm", "greedy,beam+lm",
               limit=None, quick_limit=None, what="bundled models on George Washington pages 278-279"),
]

#: The original MXNet system's published IAM numbers: theirs, on their GPU, never measured here.
PEER_REFERENCE = {
    "system": "awslabs handwritten-text-recognition-for-apache-mxnet (the original; published numbers)",
    "data": "IAM test set",
    "line_cer_greedy": 8.4, "page_cer_greedy": 11.6, "lines_per_second": 30.9, "forms_per_second": 2.9,
    "hardware": "their GPU",
    "note": "their evaluation averaged per-speaker sclite rates and counted 100 - %correct (no insertions); "
            "sclite's character mode also ignores spaces, so these are not directly comparable",
}


# -- machine ---------------------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, TensorFlow version (without importing it), git commit, GPUs."""
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            ram = round(int(line.split()[1]) / 1024 ** 2, 1)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    versions = {}
    for pkg in ("tensorflow", "keras", "numpy", "jiwer"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    gpus: list[str] = []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
            gpus = [g for g in out.splitlines() if g.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": usable, "ram_gb": ram,
            "gpus": gpus, "platform": platform.platform(), "python": platform.python_version(),
            **{f"{k}_version": v for k, v in versions.items()}, "git": _git()}


def _git() -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": head or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# -- running ---------------------------------------------------------------------------------------
def parse_json_output(text: str) -> Any:
    """A benchmark's stdout as JSON: one document, else every JSON object printed on its own line(s).

    Returns the document, a list of the objects found (in order), or None when there is none.
    """
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    dec = json.JSONDecoder()
    found, i = [], 0
    while i < len(text):
        j = text.find("{", i)
        if j < 0:
            break
        if j > 0 and text[j - 1] not in "\n":
            i = j + 1
            continue
        try:
            obj, end = dec.raw_decode(text, j)
        except json.JSONDecodeError:
            i = j + 1
            continue
        found.append(obj)
        i = end
    if not found:
        return None
    return found[0] if len(found) == 1 else found


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd: list[str], timeout: float, logs: Path, name: str) -> dict[str, Any]:
    """Run ``cmd``; a dict with status, seconds, returncode, stdout/stderr (stderr tail on errors)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
        out, err, rc, status = proc.stdout, proc.stderr, proc.returncode, "ok" if proc.returncode == 0 else "error"
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        rc, status = None, "timeout"
    seconds = time.perf_counter() - t0
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{name}.stdout").write_text(out)
    (logs / f"{name}.stderr").write_text(err)
    return {"status": status, "seconds": round(seconds, 2), "returncode": rc, "command": cmd,
            "_stdout": out, "_stderr": err}


def _tail(text: str, n: int = 1500) -> str:
    return text[-n:].strip()


def _offers_quick(script: Path) -> bool:
    try:
        out = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, env=_env(), capture_output=True,
                             text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--quick" in out


def _fill(args: list[str], records: dict[str, str | None]) -> list[str] | None:
    """``args`` with ``{name}`` record-set placeholders filled; None when one is not given."""
    out = []
    for a in args:
        if a.startswith("{") and a.endswith("}"):
            value = records.get(a[1:-1])
            if not value:
                return None
            a = str(value)
        out.append(a)
    return out


def run_bench(b: Bench, bench_dir: Path, quick: bool, logs: Path,
              records: dict[str, str | None] | None = None) -> dict[str, Any]:
    """One benchmark script -> its entry (never raises for the script's own failures)."""
    script = bench_dir / b.script
    entry: dict[str, Any] = {"name": b.name, "kind": "script", "script": b.script, "what": b.what}
    if not script.exists():
        return {**entry, "status": "error", "error": f"script {b.script} is missing"}
    if not quick:
        args = b.full
    elif b.quick is None:
        args = ["--quick"] if _offers_quick(script) else []
    else:
        args = b.quick
    filled = _fill(args, records or {})
    if filled is None:
        if b.without_records is None:
            return {**entry, "status": "skipped",
                    "error": "needs a record set (--synth-records / --gw-records, or --make-data)"}
        filled = b.without_records
    args = filled
    r = _run([sys.executable, str(script), *args], b.quick_timeout if quick else b.timeout, logs, b.name)
    entry.update({k: v for k, v in r.items() if not k.startswith("_")})
    result = parse_json_output(r["_stdout"])
    if r["status"] == "ok" and result is None:
        entry.update(status="error", error="the script printed no JSON")
    elif r["status"] != "ok":
        entry["error"] = (f"timed out after {r['seconds']} s" if r["status"] == "timeout"
                          else f"exit status {r['returncode']}") + ": " + _tail(r["_stderr"] or r["_stdout"], 600)
    if result is not None:
        entry["result"] = result
    return entry


def run_evaluation(ev: Evaluation, records: str | None, quick: bool, logs: Path, reports: Path
                   ) -> dict[str, Any]:
    """``htr evaluate pipeline`` on ``records`` -> an entry with the summary (per-line rows left out)."""
    entry: dict[str, Any] = {"name": ev.name, "kind": "evaluation", "what": ev.what, "records": records,
                             "split": ev.split}
    if not records:
        opt = "--" + ev.records_option.replace("_", "-")
        return {**entry, "status": "skipped", "error": f"no record set given ({opt} DIR)"}
    if not (Path(records) / "manifest.json").exists():
        return {**entry, "status": "error", "error": f"{records} is not a record set (no manifest.json)"}
    limit = ev.quick_limit if quick else ev.limit
    decoders = ev.quick_decoders if quick else ev.decoders
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "htr_tf.cli", "evaluate", "pipeline", "--data", str(records),
               "--split", ev.split, "--decoder", decoders, "--json", str(out_json),
               "--report", str(reports / f"{ev.name}.html"), "--quiet"]
        if limit is not None:
            cmd += ["--limit", str(limit)]
        r = _run(cmd, ev.quick_timeout if quick else ev.timeout, logs, ev.name)
        entry.update({k: v for k, v in r.items() if not k.startswith("_")})
        if r["status"] != "ok" or not out_json.exists():
            entry["status"] = "error" if r["status"] == "ok" else r["status"]
            entry["error"] = _tail(r["_stderr"] or r["_stdout"], 600) or "no report written"
            return entry
        rep = json.loads(out_json.read_text())
    entry["result"] = {k: rep[k] for k in ("num_pages", "num_gt_lines", "num_detected_lines", "decoders",
                                           "summary", "detection", "timings", "backend", "options")}
    entry["report_html"] = str(reports / f"{ev.name}.html")
    return entry


def _discovered(bench_dir: Path, known: Sequence[str]) -> list[Bench]:
    """``bench_*.py`` scripts the table does not list yet."""
    return [Bench(p.stem.removeprefix("bench_"), p.name, [], None, what="(not in run.py's table: default sizes)")
            for p in sorted(bench_dir.glob("bench_*.py")) if p.name not in known]


def run_suite(out: Path, quick: bool = False, bench_dir: Path = BENCH_DIR, benches: Sequence[Bench] | None = None,
              evaluations: Sequence[Evaluation] | None = None, records: dict[str, str | None] | None = None,
              only: Sequence[str] = (), skip: Sequence[str] = (), discover: bool = True,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Run the benchmarks and evaluations; write ``out/bench.json`` and ``out/bench.md``; return the JSON."""
    from_fileio = _atomic_writer()
    benches = list(BENCHES if benches is None else benches)
    if discover:
        benches += _discovered(bench_dir, [x.script for x in benches])
    evaluations = list(EVALUATIONS if evaluations is None else evaluations)
    records = records or {}
    out.mkdir(parents=True, exist_ok=True)
    logs, reports = out / "logs", out / "reports"
    reports.mkdir(parents=True, exist_ok=True)

    def wanted(name: str) -> bool:
        return (not only or name in only) and name not in skip

    started = _dt.datetime.now(_dt.timezone.utc)
    suite: dict[str, Any] = {"kind": "htr_bench", "format_version": FORMAT_VERSION, "mode": "quick" if quick else "full",
                             "date": started.isoformat(timespec="seconds"), "machine": machine_info(),
                             "loadavg_before": _loadavg(), "entries": []}
    t0 = time.perf_counter()
    for b in benches:
        if not wanted(b.name):
            continue
        log(f"bench {b.name} ({b.script}) ...")
        e = run_bench(b, bench_dir, quick, logs, records)
        log(f"  {e['status']} ({e.get('seconds', 0)} s){': ' + e['error'][:200] if e.get('error') else ''}")
        suite["entries"].append(e)
    for ev in evaluations:
        if not wanted(ev.name):
            continue
        log(f"evaluate {ev.name} ...")
        e = run_evaluation(ev, records.get(ev.records_option), quick, logs, reports)
        log(f"  {e['status']} ({e.get('seconds', 0)} s){': ' + e['error'][:200] if e.get('error') else ''}")
        suite["entries"].append(e)
    suite["seconds"] = round(time.perf_counter() - t0, 1)
    suite["loadavg_after"] = _loadavg()
    suite["peer_reference"] = PEER_REFERENCE
    from_fileio(out / "bench.json", json.dumps(suite, indent=1, ensure_ascii=False, default=str) + "\n")
    from_fileio(out / "bench.md", markdown(suite))
    return suite


def _atomic_writer() -> Callable[[Path, str], None]:
    try:
        from htr_tf.fileio import atomic_write_text

        return atomic_write_text
    except ImportError:   # running without the package on the path: plain writes
        return lambda p, t: Path(p).write_text(t, encoding="utf-8")


# -- markdown --------------------------------------------------------------------------------------
#: Keys whose numbers make a headline, most telling first.
_HEADLINE_KEYS = ("lines_per_s", "lines_per_second", "pages_per_s", "pages_per_second", "seconds_per_page",
                  "ms_per_page", "ms_per_line", "cer", "wer", "latency", "throughput", "recall", "precision",
                  "infer", "train", "total", "params", "flops", "seconds")


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        for i, v in enumerate(obj):
            label = str(v.get("decoder") or v.get("name") or v.get("mode") or i)
            label += "".join(f",{k}={v[k]}" for k in ("beam", "beam_width", "processes", "backend", "augment",
                                                        "clients") if k in v)
            out += _flatten({k: x for k, x in v.items() if k not in ("decoder", "name")},
                            f"{prefix}[{label}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append((prefix, obj))
    return out


def headline(result: Any, n: int = 8) -> str:
    """A few numbers of a benchmark's JSON whose names say speed or accuracy."""
    def rank(key: str) -> int:
        return next(i for i, h in enumerate(_HEADLINE_KEYS) if h in key.lower())

    leaves = [(k, v) for k, v in _flatten(result) if any(h in k.lower() for h in _HEADLINE_KEYS)
              and "loadavg" not in k and "load_average" not in k]
    leaves.sort(key=lambda kv: rank(kv[0]))          # speed and accuracy first, sizes last
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in leaves[:n]]
    more = f" (+{len(leaves) - n} more in bench.json)" if len(leaves) > n else ""
    return ("; ".join(parts) + more) if parts else "see bench.json"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def markdown(suite: dict[str, Any]) -> str:
    """bench.md: machine, a status table, accuracy and page-stage tables, the peer reference."""
    m = suite["machine"]
    lines = [f"# htr-tf benchmarks ({suite['mode']})", "",
             f"- date: {suite['date']}; suite time {suite.get('seconds')} s",
             f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable), "
             f"{m['ram_gb']} GB RAM, GPUs: {', '.join(m['gpus']) or 'none'}",
             f"- load average before {suite['loadavg_before']}, after {suite.get('loadavg_after')} "
             f"(a shared machine: compare runs only at similar load)",
             f"- TensorFlow {m.get('tensorflow_version')}, Keras {m.get('keras_version')}, "
             f"Python {m['python']}; commit {(m['git'] or {}).get('commit')}"
             + (" (uncommitted changes)" if (m['git'] or {}).get('dirty') else ""), "",
             "## All entries", "", "| benchmark | status | seconds | headline numbers |", "|---|---|---|---|"]
    for e in suite["entries"]:
        if e["kind"] == "evaluation" and e["status"] == "ok":
            head = "see the accuracy table"
        elif e["status"] in ("ok",):
            head = headline(e.get("result"))
        else:
            head = "**" + e["status"] + "**: " + e.get("error", "")[:300]
        lines.append(f"| {_cell(e['name'])} | {e['status']} | {e.get('seconds', '–')} | {_cell(head)} |")
    evs = [e for e in suite["entries"] if e["kind"] == "evaluation" and e["status"] == "ok"]
    if evs:
        lines += ["", "## Accuracy: pooled CER/WER (%), bundled models", "",
                  "Line level: the recogniser on ground-truth line boxes; page level: the full pipeline "
                  "(page texts joined with one space). See docs/evaluation.md.", "",
                  "| data | pages | decoder | line CER | line WER | page CER | page WER | line recall@0.5 | "
                  "line precision@0.5 |", "|---|---|---|---|---|---|---|---|---|"]
        for e in evs:
            r = e["result"]
            det = r.get("detection") or {}
            for s in r["summary"]:
                line, page = s.get("line") or {}, s.get("page") or {}
                lines.append(f"| {_cell(e['name'])} ({e['split']}) | {r['num_pages']} | {_cell(s['decoder'])} | "
                             f"{_pct(line.get('cer'))} | {_pct(line.get('wer'))} | {_pct(page.get('cer'))} | "
                             f"{_pct(page.get('wer'))} | {_pct(det.get('recall'))} | {_pct(det.get('precision'))} |")
        lines += ["", "## Page seconds by stage (one pipeline run, first decoder)", "",
                  "| data | area | lines | recognize | decode | total | line-level lines/s |",
                  "|---|---|---|---|---|---|---|"]
        for e in evs:
            t = e["result"]["timings"]
            s = t.get("seconds_per_page", {})
            lines.append(f"| {_cell(e['name'])} | " + " | ".join(
                f"{s[k]:.3f}" if k in s else "–" for k in ("area", "lines", "recognize", "decode", "total"))
                + f" | {t.get('line_level_lines_per_second') or '–'} |")
    p = suite.get("peer_reference") or PEER_REFERENCE
    lines += ["", "## Reference: the original system's published numbers (theirs, not measured here)", "",
              "| system | data | line CER greedy | page CER greedy | lines/s | forms/s | hardware |",
              "|---|---|---|---|---|---|---|",
              f"| {_cell(p['system'])} | {p['data']} | {p['line_cer_greedy']} | {p['page_cer_greedy']} | "
              f"{p['lines_per_second']} | {p['forms_per_second']} | {p['hardware']} |", "",
              f"Note: {p['note']}.", ""]
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="htr bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few minutes")
    p.add_argument("--out", default="bench-results", help="output directory (default: bench-results)")
    p.add_argument("--only", default="", help="comma-separated entry names to run (default: all)")
    p.add_argument("--skip", default="", help="comma-separated entry names to leave out")
    p.add_argument("--synth-records", default=os.environ.get("HTR_SYNTH_RECORDS"),
                   help="synthetic form record set for accuracy (split test; env HTR_SYNTH_RECORDS)")
    p.add_argument("--gw-records", default=os.environ.get("HTR_GW_RECORDS"),
                   help="GW form record set for accuracy (split validation; env HTR_GW_RECORDS)")
    p.add_argument("--make-data", action="store_true",
                   help="make the record sets not given into a cache folder ($HTR_TF_BENCH_CACHE, default "
                        "~/.cache/htr-tf/bench): 400 synthetic forms (htr data synth --seed 1, a few minutes once) "
                        "and GW pages 270-279 when ../shared/data/gw is present")
    p.add_argument("--bench-dir", default=str(BENCH_DIR), help="where the bench_*.py scripts are")
    p.add_argument("--list", action="store_true", help="list the entries and exit")


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    return run_from_args(a)


def run_from_args(a: argparse.Namespace) -> int:
    names = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    bench_dir = Path(a.bench_dir)
    if a.list:
        for b in BENCHES + _discovered(bench_dir, [x.script for x in BENCHES]):
            present = "" if (bench_dir / b.script).exists() else "  (script missing)"
            print(f"{b.name:<16} {b.script:<22} {b.what}{present}")
        for ev in EVALUATIONS:
            print(f"{ev.name:<16} {'htr evaluate pipeline':<22} {ev.what}")
        return 0
    if a.make_data:
        sys.path.insert(0, str(BENCH_DIR))
        import bench_data

        a.synth_records = a.synth_records or str(bench_data.synth_records())
        gw = None if a.gw_records else bench_data.gw_records()
        a.gw_records = a.gw_records or (str(gw) if gw else None)
    suite = run_suite(Path(a.out), quick=a.quick, bench_dir=bench_dir,
                      records={"synth_records": a.synth_records, "gw_records": a.gw_records},
                      only=names(a.only), skip=names(a.skip))
    bad = [e["name"] for e in suite["entries"] if e["status"] not in ("ok", "skipped")]
    print(f"{len(suite['entries'])} entries in {suite['seconds']} s; "
          f"{len(bad)} not ok{': ' + ', '.join(bad) if bad else ''}")
    print(f"wrote {Path(a.out) / 'bench.json'} and {Path(a.out) / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
