#!/usr/bin/env bash
# Install every handwriting font `htr data synth` v2 draws from (besides the bundled ones):
# the Debian packages of htr_tf.data.fonts.DEBIAN_FONT_PACKAGES and the PyPI packages of
# htr_tf.data.fonts.PYPI_FONT_PACKAGES. Never installs a reserved evaluation font.
# Usage: training/install_fonts.sh [PYTHON]   (PYTHON: the project's venv python, default .venv/bin/python)
set -euo pipefail
PY=${1:-.venv/bin/python}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    fonts-ecolier-court fonts-joscelyn fonts-klee fonts-leckerli-one fonts-lobster fonts-seto fonts-yusei-magic
"$PY" -m pip install -q fontpkg-delius fontpkg-great-vibes fontpkg-lobster-two fontpkg-oleo-script \
    fontpkg-pacifico fontpkg-satisfy fontpkg-yellowtail
# what synth will use now (every font checked against the reserved list)
"$PY" -m htr_tf.commands.synth fonts --check
