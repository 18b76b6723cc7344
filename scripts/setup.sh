#!/usr/bin/env bash
# Called by scripts/test.sh and .ci/run (and by a newcomer, once): installs what the
# tests need on a fresh Debian machine. Every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v prometheus >/dev/null || missing+=(prometheus)
# For tests/test_image.py, through scripts/build-image.sh (which also installs them if missing).
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if (( ${#missing[@]} )); then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these as services on install; the tests run their own on free ports.
for service in redis-server redis-sentinel prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
  fi
done

if ! python3 -c 'import bot, slack_bolt, pytest, ruff' 2>/dev/null \
  || [[ pyproject.toml -nt .setup-stamp ]]; then
  python3 -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch .setup-stamp
fi

bash scripts/build-control-plane.sh >/dev/null
bash scripts/build-tools.sh >/dev/null
bash scripts/build-argo-rollouts.sh >/dev/null
