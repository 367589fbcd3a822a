#!/usr/bin/env bash
# Crash soak (run by .ci/run at CI size): walletguard is killed at random moments many times
# while a stream is produced; every decision and the freeze set must equal one uninterrupted
# replay. Runs against both brokers: tansu (installed if missing) and `walletguard
# mock-broker` (librdkafka's mock cluster in a process of its own). See tests/soak.py.
#
# Knobs (environment), CI defaults in brackets:
#   SOAK_BROKERS   brokers to run against ["tansu mock"]
#   SOAK_KILLS     kills per run [8]
#   SOAK_USERS     simulated users [1500] (about 100k events over SOAK_DAYS [30])
#   SOAK_RATE      events per second produced [4000]
#   SOAK_PARTITIONS input partitions [8]
#   SOAK_MIN_GAP / SOAK_MAX_GAP  seconds between a restart and the next kill [1 / 6]
#   SOAK_INSTANCES instances in the group [1]
#   SOAK_OUTAGE    seconds of a full broker outage in the middle of each run [30]; 0 = none
#                  (mock: the broker goes down; tansu: frozen with SIGSTOP, then SIGCONT)
#   SOAK_ARGS      more arguments for soak.py
# The long run of the issue: SOAK_KILLS=20 SOAK_USERS=6000 SOAK_RATE=8000 SOAK_MIN_GAP=1 SOAK_MAX_GAP=5.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
BROKERS="${SOAK_BROKERS:-tansu mock}"

if [[ " $BROKERS " == *" tansu "* ]] && ! command -v tansu >/dev/null 2>&1; then
  echo "soak: installing tansu 0.6.0 (cargo install; a few minutes)"
  cargo install tansu --locked --version 0.6.0 --features dynostore >/dev/null
fi
WG="${WG_SOAK_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/walletguard}"
if [ -z "${WG_SOAK_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi

for b in $BROKERS; do
  echo "soak: == $b =="
  extra=()
  # An outage in the middle of each run: the mock goes down, tansu is frozen (it keeps its data).
  extra+=(--outage "${SOAK_OUTAGE:-30}")
  # shellcheck disable=SC2086
  python3 "$ROOT/tests/soak.py" --wg "$WG" --broker "$b" "${extra[@]}" \
    --kills "${SOAK_KILLS:-8}" --users "${SOAK_USERS:-1500}" --days "${SOAK_DAYS:-30}" \
    --rate "${SOAK_RATE:-4000}" --partitions "${SOAK_PARTITIONS:-8}" \
    --min-gap "${SOAK_MIN_GAP:-1}" --max-gap "${SOAK_MAX_GAP:-6}" --after-assign \
    --instances "${SOAK_INSTANCES:-1}" ${SOAK_ARGS:-}
done
echo "soak: passed"
