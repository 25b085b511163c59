#!/usr/bin/env bash
# Wrap a PyInstaller bundle of OCRDesk in a Debian package (called by packaging/build.sh):
#
#   packaging/make_deb.sh BUNDLE_DIR VERSION OUT_DIR [zstd|xz|gzip]
#
# The package puts the bundle in /opt/ocrdesk, a /usr/bin/ocrdesk symlink to it, and the desktop
# entry, hicolor icon and AppStream metainfo in /usr/share (the menus, icon caches and software
# centres pick them up through dpkg triggers). No maintainer scripts, so `dpkg -r` leaves no
# record behind either. Qt WebEngine, run as root, creates an empty
# _internal/PySide6/Qt/resources/locales/ (as it does in a pip install's site-packages): the
# package ships that folder, so dpkg owns it and removes it with the rest.
# Depends: the Debian packages that own the system libraries the bundle links (ldd, then
# dpkg -S), at least the versions this machine has. The system libraries of optional Qt plugins
# (Wayland, the GTK theme), which a desktop has and a server may lack, are Recommends.
set -euo pipefail

BUNDLE=$(cd "$1" && pwd)
VERSION=$2
OUT=$3
COMPRESS=${4:-zstd}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ARCH=$(dpkg --print-architecture)
NAME=ocrdesk
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PKG=$STAGE/${NAME}_${VERSION}_${ARCH}

mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/applications" \
  "$PKG/usr/share/icons/hicolor/scalable/apps" "$PKG/usr/share/metainfo" \
  "$PKG/usr/share/doc/$NAME"
cp -a "$BUNDLE" "$PKG/opt/$NAME"
if [[ -d $PKG/opt/$NAME/_internal/PySide6/Qt/resources ]]; then
  mkdir -p "$PKG/opt/$NAME/_internal/PySide6/Qt/resources/locales"
fi
ln -s "/opt/$NAME/$NAME" "$PKG/usr/bin/$NAME"
install -m 644 "$ROOT/resources/ocrdesk.desktop" "$PKG/usr/share/applications/"
install -m 644 "$ROOT/resources/ocrdesk.svg" "$PKG/usr/share/icons/hicolor/scalable/apps/"
install -m 644 "$ROOT/resources/io.github.ocrdesk.OCRDesk.metainfo.xml" "$PKG/usr/share/metainfo/"
cat >"$PKG/usr/share/doc/$NAME/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: OCRDesk
Comment: /opt/$NAME is a PyInstaller bundle: Python, PySide6 (Qt 6, LGPL-3.0), PyMuPDF
 (AGPL-3.0), KaTeX (MIT) and the other dependencies named in the wheel's metadata, each under
 its own licence.

Files: *
License: MIT
EOF

# Depends: the packages owning the system libraries that the bundle's ELF files resolve to.
LIBPATH=$BUNDLE/_internal:$BUNDLE/_internal/PySide6/Qt/lib
declare -A owners=()
missing=()
while IFS= read -r -d '' file; do
  [[ $(head -c 4 "$file" | od -An -c | tr -d ' ') == 177ELF ]] || continue
  while read -r lib _ path _; do
    if [[ $path == "not" ]]; then
      missing+=("$lib")
    elif [[ $path == /* && $path != "$BUNDLE"/* ]]; then
      owners[$(realpath "$path")]=1
    fi
  done < <(LD_LIBRARY_PATH=$LIBPATH ldd "$file" 2>/dev/null | grep "=>" || true)
done < <(find "$BUNDLE" -type f \( -name '*.so*' -o -perm -u+x \) -print0)

declare -A packages=()
for path in "${!owners[@]}"; do
  owner=$(dpkg-query -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1) || true
  if [[ -z $owner ]]; then  # merged /usr: the package may list the path without /usr
    owner=$(dpkg-query -S "${path#/usr}" 2>/dev/null | head -n 1 | cut -d: -f1) || true
  fi
  [[ -n $owner ]] && packages[$owner]=1
done
depends=()
for pkg in $(printf '%s\n' "${!packages[@]}" | sort); do
  version=$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null | head -n 1)
  depends+=("$pkg (>= ${version%%+*})")
done
DEPENDS=$(IFS=,; echo "${depends[*]}" | sed 's/,/, /g')
RECOMMENDS="libwayland-cursor0, libwayland-egl1, libgtk-3-0"
if ((${#missing[@]})); then
  echo "libraries not on this machine (optional Qt plugins): $(printf '%s\n' "${missing[@]}" \
    | sort -u | tr '\n' ' ')" >&2
fi

cat >"$PKG/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: The OCRDesk developers <ocrdesk@users.noreply.github.com>
Installed-Size: $(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
Depends: $DEPENDS
Recommends: $RECOMMENDS
Section: graphics
Priority: optional
Homepage: https://github.com/ocrdesk/ocrdesk
Description: desktop OCR workbench built on DeepSeek-OCR
 OCRDesk turns PDFs and screenshots into markdown with grounding boxes, raw
 model output, JSON and an annotated layout PDF, through a vLLM or SGLang
 server spoken to with the OpenAI-compatible API. Window and command line
 (ocrdesk convert) in one self-contained bundle under /opt/ocrdesk.
 .
 vLLM is not included: OCRDesk starts the vllm executable set in its
 settings, in OCRDESK_VLLM or found on PATH, or uses a remote server.
EOF

mkdir -p "$OUT"
DEBFILE=$OUT/${NAME}_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$PKG" "$DEBFILE" >&2
ls -l "$DEBFILE" >&2
echo "$DEBFILE"
