"""`htr bench` / benchmarks/run.py on a tiny benchmark directory made by the test."""

from __future__ import annotations

import json
import textwrap

import pytest

from htr_tf.commands.bench import _runner

bench_run = _runner()   # benchmarks/run.py, loaded the way `htr bench` loads it

OK = textwrap.dedent('''
    import argparse, json
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    print("warming up")                       # chatter before the JSON is tolerated
    print(json.dumps({"benchmark": "ok", "quick": a.quick, "lines_per_s": 12.5, "cer": 0.031}, indent=1))
''')
FAIL = "import sys\nprint('partial', flush=True)\nsys.stderr.write('boom: no model\\n')\nsys.exit(3)\n"
SILENT = "print('no json here')\n"


@pytest.fixture
def bench_dir(tmp_path):
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "bench_ok.py").write_text(OK)
    (d / "bench_fail.py").write_text(FAIL)
    return d


def test_parse_json_output_forms():
    assert bench_run.parse_json_output('{\n "a": 1\n}\n') == {"a": 1}
    assert bench_run.parse_json_output('{"a": 1}\n{"a": 2}\n') == [{"a": 1}, {"a": 2}]
    assert bench_run.parse_json_output('loading...\n{"a": {"b": [1, 2]}}\ndone\n') == {"a": {"b": [1, 2]}}
    assert bench_run.parse_json_output("nothing\n") is None and bench_run.parse_json_output("") is None


def test_htr_bench_quick_records_errors_and_keeps_going(bench_dir, tmp_path, monkeypatch, capsys):
    from htr_tf.cli import main

    monkeypatch.delenv("HTR_SYNTH_RECORDS", raising=False)
    monkeypatch.delenv("HTR_GW_RECORDS", raising=False)
    out = tmp_path / "out"
    rc = main(["bench", "--quick", "--bench-dir", str(bench_dir), "--out", str(out),
               "--skip", "recognizer,decoders"])
    assert rc == 0
    suite = json.loads((out / "bench.json").read_text())
    by = {e["name"]: e for e in suite["entries"]}
    assert "recognizer" not in by and "decoders" not in by                       # --skip
    assert by["ok"]["status"] == "ok" and by["ok"]["result"]["quick"] is True    # --quick offered -> passed
    assert by["ok"]["result"]["lines_per_s"] == 12.5
    assert by["fail"]["status"] == "error" and "exit status 3" in by["fail"]["error"]
    assert "boom: no model" in by["fail"]["error"]
    assert by["layout"]["status"] == "error" and "missing" in by["layout"]["error"]   # table entry, no script
    assert by["accuracy_synth"]["status"] == "skipped" and "--synth-records" in by["accuracy_synth"]["error"]
    m = suite["machine"]
    assert m["logical_cpus"] >= 1 and m["cpu"] and "tensorflow_version" in m
    assert suite["mode"] == "quick" and suite["loadavg_before"] is not None and suite["date"]
    assert (out / "logs" / "fail.stderr").read_text().startswith("boom")
    md = (out / "bench.md").read_text()
    assert "| ok | ok |" in md and "lines_per_s=12.5" in md and "| fail | error |" in md
    assert "theirs, not measured here" in md and "| 8.4 | 11.6 | 30.9 | 2.9 |" in md
    assert "not ok" in capsys.readouterr().out


def test_timeout_no_json_and_bad_records_are_entries(bench_dir, tmp_path):
    (bench_dir / "bench_slow.py").write_text("import time\ntime.sleep(30)\n")
    (bench_dir / "bench_silent.py").write_text(SILENT)
    benches = [bench_run.Bench("slow", "bench_slow.py", [], [], quick_timeout=1.0),
               bench_run.Bench("silent", "bench_silent.py", [], []),
               bench_run.Bench("needs_gw", "bench_ok.py", [], ["--data", "{gw_records}"]),
               bench_run.Bench("falls_back", "bench_ok.py", [], ["--data", "{gw_records}"], without_records=[])]
    evals = [bench_run.Evaluation("acc", "synth_records", "test", "greedy", "greedy")]
    suite = bench_run.run_suite(tmp_path / "out", quick=True, bench_dir=bench_dir, benches=benches,
                                evaluations=evals, records={"synth_records": str(tmp_path)}, discover=False,
                                log=lambda m: None)
    by = {e["name"]: e for e in suite["entries"]}
    assert by["slow"]["status"] == "timeout" and by["slow"]["seconds"] < 20
    assert by["silent"]["status"] == "error" and "no JSON" in by["silent"]["error"]
    assert by["acc"]["status"] == "error" and "not a record set" in by["acc"]["error"]
    assert by["needs_gw"]["status"] == "skipped" and by["falls_back"]["status"] == "ok"
    assert by["falls_back"]["result"]["quick"] is False                     # ran with the fallback arguments
    assert set(by) == {"slow", "silent", "needs_gw", "falls_back", "acc"}   # discover=False


def test_markdown_tables_from_an_evaluation_entry():
    suite = {"mode": "full", "date": "2026-01-01T00:00:00+00:00", "seconds": 1.0, "loadavg_before": [1, 1, 1],
             "loadavg_after": [1, 1, 1],
             "machine": {"cpu": "X", "logical_cpus": 2, "usable_cpus": 2, "ram_gb": 8, "gpus": [],
                         "python": "3.11", "git": {"commit": "abc", "dirty": False}},
             "entries": [{"name": "accuracy_gw", "kind": "evaluation", "status": "ok", "seconds": 3, "split": "validation",
                          "result": {"num_pages": 2, "detection": {"recall": 0.9, "precision": 0.8},
                                     "summary": [{"decoder": "greedy", "line": {"cer": 0.1, "wer": 0.3},
                                                  "page": {"cer": 0.2, "wer": 0.4}}],
                                     "timings": {"seconds_per_page": {"area": 0.5, "lines": 0.25, "recognize": 1.0,
                                                                      "decode": 0.125, "total": 1.875},
                                                 "line_level_lines_per_second": 30.0}}}]}
    md = bench_run.markdown(suite)
    assert "| accuracy_gw (validation) | 2 | greedy | 10.00 | 30.00 | 20.00 | 40.00 | 90.00 | 80.00 |" in md
    assert "| accuracy_gw | 0.500 | 0.250 | 1.000 | 0.125 | 1.875 | 30.0 |" in md
