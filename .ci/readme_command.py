"""Print one of README.md's two quick-start commands: `run` (first) or `test` (second)."""

import pathlib
import re
import sys

text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
which = {"run": 0, "test": 1}[sys.argv[1]]
print(" ".join(line.strip().rstrip("\\").strip() for line in blocks[which].strip().splitlines()))
