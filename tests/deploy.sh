#!/usr/bin/env bash
# Checks of deploy/ with the real tools: promtool (rules, config, alert unit tests), a real
# Prometheus server scraping `walletguard demo` and evaluating every rule and dashboard query,
# offline Kubernetes schema validation, hadolint, and the compose stack against the config and
# the wire contract. Installs what is missing: Debian's prometheus package (promtool and the
# server) and a Python venv with the pinned tools of tests/deploy/requirements.txt, cached in
# $WG_DEPLOY_CACHE (default ~/.cache/walletguard-deploy).
#
#   bash tests/deploy.sh                # builds the debug binary unless WG_DEPLOY_BIN is set
#   WG_DEPLOY_BIN=target/release/walletguard bash tests/deploy.sh -k live   # pytest arguments pass through
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${WG_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/walletguard-deploy}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing prometheus (promtool and server) from Debian =="
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus >/dev/null
fi
promtool --version | head -n1

req="tests/deploy/requirements.txt"
stamp="$CACHE/venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$CACHE/venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== python venv with the deploy check tools ($CACHE/venv) =="
  mkdir -p "$CACHE"
  if ! python3 -m venv "$CACHE/venv" 2>/dev/null; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$CACHE/venv"
  fi
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

if [ -z "${WG_DEPLOY_BIN:-}" ]; then
  echo "== cargo build --bin walletguard =="
  cargo build --quiet --bin walletguard
  WG_DEPLOY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/walletguard"
fi
export WG_DEPLOY_BIN

# The venv's bin first: hadolint comes from there.
export PYTHONDONTWRITEBYTECODE=1
PATH="$CACHE/venv/bin:$PATH" "$CACHE/venv/bin/python" -m pytest -c tests/deploy/pytest.ini \
  --rootdir tests/deploy -v "$@" tests/deploy
