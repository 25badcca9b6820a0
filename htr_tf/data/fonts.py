"""Where the handwriting fonts of ``htr data synth`` come from, and which ones may never be used.

Three sources, each an explicit list (never a glob over the system's fonts, which could pick
up a font reserved for evaluation):

* the fonts bundled in ``htr_tf/assets/fonts/hand`` (small OFL fonts, always there);
* Debian font packages named in :data:`DEBIAN_FONT_PACKAGES` (each with its files), found
  under ``/usr/share/fonts`` when the package is installed
  (``training/install_fonts.sh`` installs them);
* PyPI ``fontpkg-*`` packages named in :data:`PYPI_FONT_PACKAGES`, found in the Python
  environment when installed.

:data:`RESERVED_PACKAGES` are the Debian packages whose fonts are kept for independent
evaluation of the recogniser on unseen handwriting: :func:`check_not_reserved` refuses any
font file that belongs to one (by ``dpkg -S``, by its install path, or by its file name),
and every font the generator loads goes through it, including those of ``--fonts DIR``.

    htr data fonts            # the table: name, origin, licence, status, path
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from htr_tf.errors import DataError

__all__ = ["RESERVED_PACKAGES", "RESERVED_FONT_FILES", "DEBIAN_FONT_PACKAGES", "PYPI_FONT_PACKAGES",
           "FontSource", "ReservedFontError", "check_not_reserved", "font_sources", "debian_install_line",
           "BUNDLED_HAND_FONTS"]

BUNDLED_HAND_FONTS = Path(__file__).resolve().parents[1] / "assets" / "fonts" / "hand"

#: Debian packages reserved for independent evaluation: never used for training, tuning,
#: model selection, bundling, or looking at synthetic results.
RESERVED_PACKAGES: tuple[str, ...] = (
    "fonts-dkg-handwriting", "fonts-sjfonts", "ttf-sjfonts", "fonts-tlwg-purisa", "fonts-tlwg-purisa-otf",
    "fonts-tlwg-purisa-ttf", "fonts-femkeklaver", "fonts-staypuft", "fonts-rufscript", "fonts-isabella",
    "fonts-havana",
)
#: The font files those packages install (from ``dpkg-deb -c`` of Debian 12's packages):
#: a copy of one elsewhere is refused by its name too.
RESERVED_FONT_FILES: frozenset[str] = frozenset(n.lower() for n in (
    "dkg.ttf", "dkgBI.ttf", "dkgBd.ttf", "dkgIt.ttf", "femkeklaver.ttf", "Havana-Regular.otf",
    "Isabella.ttf", "Rufscript010.ttf", "Delphine.ttf", "SteveHand.ttf", "StayPuft.ttf",
    "Purisa.otf", "Purisa-Bold.otf", "Purisa-BoldOblique.otf", "Purisa-Oblique.otf",
    "Purisa.ttf", "Purisa-Bold.ttf", "Purisa-BoldOblique.ttf", "Purisa-Oblique.ttf",
))
#: Install directories of the reserved packages.
_RESERVED_DIRS = ("/fifthhorseman/", "/femkeklaver/", "/havana/", "/isabella/", "/rufscript/",
                  "/sjfonts/", "/staypuft/")


class ReservedFontError(DataError):
    """A font reserved for evaluation was offered to the generator."""


@dataclass(frozen=True)
class FontSource:
    """One handwriting font file the generator may use, and where it comes from."""

    path: str
    origin: str        # "bundled", "debian:PACKAGE" or "pypi:DIST"
    licence: str


#: Debian packages of handwriting fonts the generator uses when installed: package ->
#: (licence, files under /usr/share/fonts).  Chosen by looking at every Debian 12
#: ``fonts-*`` package with a handwriting or script face; left out (with the reason) in
#: ``htr_tf/assets/fonts/README.md``.  The bundled fonts' packages are not repeated here.
DEBIAN_FONT_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "fonts-ecolier-court": ("OFL-1.1", ("truetype/ecolier-court/Ecolier-court.ttf",)),
    "fonts-joscelyn": ("OFL-1.1", ("opentype/joscelyn/Joscelyn-Regular.otf",)),
    "fonts-lobster": ("OFL-1.1", ("opentype/lobster/lobster.otf",)),
    "fonts-leckerli-one": ("OFL-1.1", ("truetype/leckerli-one/LeckerliOne-Regular.ttf",)),
    "fonts-klee": ("OFL-1.1", ("truetype/klee/KleeOne-Regular.ttf", "truetype/klee/KleeOne-SemiBold.ttf")),
    "fonts-seto": ("OFL-1.1", ("truetype/seto/setofont.ttf",)),
    "fonts-yusei-magic": ("OFL-1.1", ("truetype/yusei-magic/YuseiMagic-Regular.ttf",)),
}

#: PyPI ``fontpkg-*`` distributions of handwriting fonts (Google Fonts, OFL 1.1): dist ->
#: module.  Each module holds its fonts in ``files/``.
PYPI_FONT_PACKAGES: dict[str, str] = {
    "fontpkg-great-vibes": "fontpkg_great_vibes",
    "fontpkg-pacifico": "fontpkg_pacifico",
    "fontpkg-satisfy": "fontpkg_satisfy",
    "fontpkg-yellowtail": "fontpkg_yellowtail",
    "fontpkg-lobster-two": "fontpkg_lobster_two",
    "fontpkg-oleo-script": "fontpkg_oleo_script",
    "fontpkg-delius": "fontpkg_delius",
}

_FONT_ROOT = Path("/usr/share/fonts")


def debian_install_line() -> str:
    """The ``apt-get install`` line for every Debian font package the generator can use."""
    return "apt-get install -y --no-install-recommends " + " ".join(sorted(DEBIAN_FONT_PACKAGES))


@lru_cache(maxsize=4096)
def _dpkg_owner(path: str) -> str | None:
    """The Debian package that installed ``path`` (None: not installed by dpkg, or no dpkg)."""
    if shutil.which("dpkg") is None:
        return None
    try:
        r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0 or ":" not in r.stdout:
        return None
    return r.stdout.split(":", 1)[0].strip()


def check_not_reserved(path: str | os.PathLike, use_dpkg: bool = True) -> None:
    """Raise :class:`ReservedFontError` if ``path`` is a font of a reserved package.

    Checked by file name (a copy keeps its name), by install directory, and, for files
    under ``/usr``, by asking ``dpkg -S`` which package owns the file.
    """
    p = Path(path)
    name = p.name.lower()
    resolved = str(p.resolve()) if p.exists() else str(p)
    why = None
    if name in RESERVED_FONT_FILES or name.startswith("purisa"):
        why = f"its file name {p.name!r} is a font of a reserved package"
    elif any(d in resolved.replace(os.sep, "/") for d in _RESERVED_DIRS):
        why = "it lies in a reserved package's font directory"
    elif use_dpkg and resolved.startswith("/usr/"):
        owner = _dpkg_owner(resolved)
        if owner is not None and (owner in RESERVED_PACKAGES or owner.startswith("fonts-tlwg-purisa")):
            why = f"dpkg says it belongs to {owner}"
    if why:
        raise ReservedFontError(
            f"{path}: refused, {why}; fonts of {', '.join(RESERVED_PACKAGES)} are reserved for "
            "independent evaluation and are never used to make training data")


def _pypi_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(list(spec.submodule_search_locations)[0]) / "files"
    return sorted(p for p in root.glob("*") if p.suffix.lower() in (".ttf", ".otf"))


def font_sources(include_system: bool = True, fonts_dir: str | os.PathLike | None = None) -> tuple[
        list[FontSource], list[str]]:
    """Font files the v2 generator draws from, and a note for each listed source not found.

    ``fonts_dir`` replaces every source by the fonts of that directory (recursively, each
    checked against the reserved list).  Otherwise: the bundled fonts, then (when
    ``include_system``) the installed Debian and PyPI packages of the allow-lists.
    """
    found: list[FontSource] = []
    notes: list[str] = []
    if fonts_dir is not None:
        d = Path(fonts_dir)
        if not d.is_dir():
            raise DataError(f"{d}: fonts directory not found")
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in (".ttf", ".otf") and p.is_file():
                check_not_reserved(p)
                found.append(FontSource(str(p), f"dir:{d}", "unknown (yours)"))
        return found, notes
    for p in sorted(BUNDLED_HAND_FONTS.glob("*")):
        if p.suffix.lower() in (".ttf", ".otf"):
            found.append(FontSource(str(p), "bundled", "OFL-1.1"))
    if not include_system:
        return found, notes
    for pkg, (licence, files) in sorted(DEBIAN_FONT_PACKAGES.items()):
        paths = [_FONT_ROOT / f for f in files]
        have = [p for p in paths if p.is_file()]
        if not have:
            notes.append(f"debian:{pkg} not installed ({debian_install_line().split(' ', 1)[0]} "
                         f"install {pkg}, or training/install_fonts.sh)")
        for p in have:
            check_not_reserved(p)
            found.append(FontSource(str(p), f"debian:{pkg}", licence))
    for dist, module in sorted(PYPI_FONT_PACKAGES.items()):
        files = _pypi_files(module)
        if not files:
            notes.append(f"pypi:{dist} not installed (pip install {dist})")
        for p in files:
            check_not_reserved(p, use_dpkg=False)
            found.append(FontSource(str(p), f"pypi:{dist}", "OFL-1.1"))
    return found, notes
