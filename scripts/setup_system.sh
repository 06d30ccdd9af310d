#!/usr/bin/env bash
# Installs the system tools the built-in corpus needs: espeak-ng, the MBROLA voices (Debian contrib/non-free),
# sox and ffmpeg for phone codecs. Idempotent; does nothing when everything is already there.
set -euo pipefail
# The voices of the tiny preset (CI); the default preset uses every installed one.
tiny_voices=(us1 us2 us3 en1 de2 fr1 de1 es1)
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v mbrola >/dev/null || need+=(mbrola)
command -v sox >/dev/null || need+=(sox)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
for v in "${tiny_voices[@]}"; do [ -d "/usr/share/mbrola/$v" ] || need+=("mbrola-$v"); done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "setup_system: missing ${need[*]}; run as root or: apt-get install espeak-ng mbrola sox ffmpeg mbrola-<voice>..." >&2
  exit 1
fi
src=/etc/apt/sources.list.d/ssps-contrib-non-free.sources
if [ ! -f "$src" ]; then
  # Copy of the Debian entry with the components MBROLA lives in.
  base=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v ssps | head -n1 || true)
  if [ -n "$base" ]; then
    awk 'BEGIN{RS="";ORS="\n\n"} /debian-archive-keyring|URIs:.*debian/ {sub(/Components:[^\n]*/,"Components: contrib non-free"); print}' "$base" > "$src"
  else
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$src"
  fi
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
mapfile -t all < <(apt-cache search --names-only '^mbrola-[a-z][a-z][0-9]+$' | awk '{print $1}')
apt-get install -y -qq --no-install-recommends espeak-ng mbrola sox libsox-fmt-all ffmpeg "${all[@]}" >/dev/null
