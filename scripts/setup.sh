#!/usr/bin/env bash
# Set up everything Yilian needs on a fresh machine: Python packages (uv, from uv.lock), front-end
# packages (npm, from package-lock.json) and, with --browser, Debian's Chromium and CJK fonts.
set -euo pipefail
cd "$(dirname "$0")/.."

with_browser=0
[ "${1:-}" = "--browser" ] && with_browser=1

if ! python3 -m uv --version >/dev/null 2>&1; then
  echo "==> installing uv"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
echo "==> Python packages (uv.lock)"
python3 -m uv sync --frozen --quiet

echo "==> front-end packages (package-lock.json)"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "$with_browser" = 1 ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing+=(fonts-noto-cjk)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "==> Debian packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "Browser tests need: sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
fi
