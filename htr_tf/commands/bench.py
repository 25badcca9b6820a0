"""`htr bench`: run every benchmark of the repository, one JSON and one Markdown table.

The work is done by ``benchmarks/run.py`` of the source checkout (the benchmarks are not
part of the installed package); this module loads it by path and reuses its arguments.
Only the standard library is imported here, so ``htr --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RUNNER = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def _runner() -> ModuleType | None:
    """``benchmarks/run.py`` as a module, or None outside a source checkout."""
    if not RUNNER.exists():
        return None
    spec = importlib.util.spec_from_file_location("htr_benchmarks_run", RUNNER)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(spec.name, None)
        raise
    return module


def _unavailable(problem: str):
    def run(a: argparse.Namespace) -> int:
        from htr_tf.errors import ConfigError

        raise ConfigError(f"htr bench runs the repository's benchmarks/ scripts: {problem}")

    return run


def register(sub: argparse._SubParsersAction) -> None:
    try:
        runner = _runner()
        problem = f"{RUNNER} is not there; run it from a source checkout of htr-tf"
    except Exception as e:  # noqa: BLE001 - a broken runner must not break `htr --help`
        runner, problem = None, f"{RUNNER} failed to load: {type(e).__name__}: {e}"
    p = sub.add_parser(
        "bench", help="run the benchmarks and write JSON",
        description="Run every benchmark script (benchmarks/bench_*.py) and the accuracy evaluations as "
                    "subprocesses with bounded sizes; write OUT/bench.json (machine details, every result; "
                    "failures become error entries) and OUT/bench.md (tables). --quick: a smoke run of a "
                    "few minutes.")
    if runner is None:
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_unavailable(problem))
        return
    runner.add_arguments(p)
    p.set_defaults(func=runner.run_from_args)
