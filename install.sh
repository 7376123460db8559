#!/usr/bin/env bash
# Sets up everything ellsa_ros needs on a Debian 12 machine, as root: apt packages, a
# virtual environment at .venv/ in the repository root, the exact pins of requirements.lock,
# and the package itself (editable). Safe to run again: finished steps are quick no-ops.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  libosmesa6 libegl1 libgl1 libegl-mesa0          # headless MuJoCo rendering (LIBERO)
  espeak-ng                                      # always-available TTS fallback
  libportaudio2                                  # sounddevice
  pulseaudio pulseaudio-utils libasound2-plugins # a real audio device on machines with no sound card
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[install] apt: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  for c in python3.11 python3.10 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 11)' 2>/dev/null; then PY=$c; break; fi
  done
fi
[[ -n "$PY" ]] || { echo "[install] needs Python 3.10 or 3.11 (LIBERO's bundled assets support no other)"; exit 1; }

if [[ ! -x .venv/bin/python ]]; then
  echo "[install] venv: .venv ($($PY --version))"
  "$PY" -m venv .venv || { apt-get install -y -qq python3-venv >/dev/null; "$PY" -m venv .venv; }
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.lock setup.py | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat $stamp)" != "$want" ]]; then
  echo "[install] pip: requirements.lock (first run downloads ~1 GB and takes a few minutes)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > $stamp
fi
echo "[install] ready: .venv/bin/ellsa"
