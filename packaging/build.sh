#!/usr/bin/env bash
# Build everything a person installs OCRDesk from:
#   dist/ocrdesk-VERSION-py3-none-any.whl, dist/ocrdesk-VERSION.tar.gz   (python -m build)
#   dist/ocrdesk/                          the PyInstaller one-folder bundle (packaging/ocrdesk.spec)
#   dist/ocrdesk_VERSION_ARCH.deb          the bundle under /opt/ocrdesk, with ocrdesk on PATH
#                                          (Debian and derivatives: where dpkg-deb is)
#
#   packaging/build.sh [--no-bundle] [--no-deb]
#
# It makes its own build environment (build/packaging/venv: build, PyInstaller and the app's
# dependencies from PyPI) and needs only python3 (3.10+) with venv, plus dpkg-deb for the .deb.
# Knobs (environment): PYTHON (python3), OUT (dist), WORK (build/packaging),
# DEB_COMPRESS (zstd: 27 s here against 95 s for gzip; dpkg reads it since 1.21.18, and the
# bundle needs glibc 2.36 anyway), PYINSTALLER ("pyinstaller>=6.10,<7").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$ROOT/dist}
WORK=${WORK:-$ROOT/build/packaging}
DEB_COMPRESS=${DEB_COMPRESS:-zstd}
PYINSTALLER=${PYINSTALLER:-pyinstaller>=6.10,<7}
BUNDLE=1
DEB=1
for arg in "$@"; do
  case $arg in
    --no-bundle) BUNDLE=0; DEB=0 ;;
    --no-deb) DEB=0 ;;
    *) echo "usage: $0 [--no-bundle] [--no-deb]" >&2; exit 2 ;;
  esac
done

say() { printf '\n== %s\n' "$*" >&2; }

VENV=$WORK/venv
if [[ ! -x $VENV/bin/python ]]; then
  say "build environment: $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip build "$PYINSTALLER"

say "wheel and sdist -> $OUT"
mkdir -p "$OUT"
rm -f "$OUT"/ocrdesk-*.whl "$OUT"/ocrdesk-*.tar.gz
"$VENV/bin/python" -m build --outdir "$OUT" "$ROOT" >"$WORK/build.log" 2>&1 \
  || { tail -n 40 "$WORK/build.log" >&2; exit 1; }
WHEEL=$(ls "$OUT"/ocrdesk-*-py3-none-any.whl)
VERSION=$(basename "$WHEEL" | cut -d- -f2)
ls -l "$WHEEL" "$OUT/ocrdesk-$VERSION.tar.gz" >&2
[[ $BUNDLE == 1 ]] || exit 0

# Qt's xcb platform plugin (the window on X11) needs these system libraries, which the PySide6
# wheel does not carry; PyInstaller copies them into the bundle only if this machine has them.
# Their list is gui/platform_check.py's (a stdlib-only file, run here as a script).
XCB_DEBS=$("$PYTHON" "$ROOT/gui/platform_check.py" --debian-packages)
if command -v dpkg-query >/dev/null; then
  missing=$(for p in $XCB_DEBS; do
    dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"
  done)
  if [[ -n $missing ]]; then
    if [[ $EUID == 0 ]] && command -v apt-get >/dev/null; then
      say "installing the xcb libraries the bundle carries: $(echo $missing)"
      apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2
    else
      echo "warning: the bundle will lack $(echo $missing): sudo apt-get install them first" >&2
    fi
  fi
fi

say "PyInstaller bundle -> $OUT/ocrdesk"
# The app's dependencies, as the wheel asks for them (the spec takes OCRDesk's own code from ROOT).
"$VENV/bin/python" -m pip install -q "$WHEEL"
"$VENV/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$OUT" \
  --workpath "$WORK/pyinstaller" "$ROOT/packaging/ocrdesk.spec"
"$OUT/ocrdesk/ocrdesk" --version
du -sh "$OUT/ocrdesk" >&2
[[ $DEB == 1 ]] || exit 0
if ! command -v dpkg-deb >/dev/null; then
  echo "no dpkg-deb here: the .deb is skipped" >&2
  exit 0
fi

say "Debian package"
"$ROOT/packaging/make_deb.sh" "$OUT/ocrdesk" "$VERSION" "$OUT" "$DEB_COMPRESS"
