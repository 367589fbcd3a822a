#!/usr/bin/env bash
# Crash soak (run by .ci/run at CI size): walletguard is killed at random moments many times
# while a stream is produced; every decision and the freeze set must equal one uninterrupted
# replay. Runs against both brokers: tansu (installed if missing) and `walletguard
# mock-broker` (librdkafka's mock cluster in a process of its own). See tests/soak.py.
#
# Knobs (environment), CI defaults in brackets:
#   SOAK_BROKERS   brokers to run against ["tansu mock"]
#   SOAK_KILLS     faults per run [8]
#   SOAK_FAULTS    fault kinds drawn at random, kind[:weight],... [kill:3,pause:2,leave]
#                  kill (SIGKILL), pause (SIGSTOP past the session, then SIGCONT), leave
#                  (SIGTERM, back 2-10 s later), freeze (the broker hangs 2-8 s); a leave
#                  with one instance is a kill
#   SOAK_SESSION_MS session.timeout.ms of the instances [6000]
#   SOAK_USERS     simulated users [1500] (about 100k events over SOAK_DAYS [30])
#   SOAK_RATE      events per second produced [4000]
#   SOAK_PARTITIONS input partitions [8]
#   SOAK_MIN_GAP / SOAK_MAX_GAP  seconds between a restart and the next kill [1 / 6]
#   SOAK_INSTANCES instances in the group [1]
#   SOAK_OUTAGE    seconds of a full broker outage in the middle of each run [30]; 0 = none
#                  (mock: the broker goes down; tansu: frozen with SIGSTOP, then SIGCONT)
#   SOAK_ARGS      more arguments for soak.py
# The kill soak: SOAK_FAULTS=kill SOAK_KILLS=20 SOAK_USERS=6000 SOAK_RATE=8000 SOAK_MIN_GAP=1
# SOAK_MAX_GAP=5 SOAK_PARTITIONS=4. The long run of every fault: SOAK_KILLS=100 SOAK_INSTANCES=3
# SOAK_USERS=13000 SOAK_FAULTS=kill,pause,leave,freeze.
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
    --instances "${SOAK_INSTANCES:-1}" --faults "${SOAK_FAULTS:-kill:3,pause:2,leave}" \
    --session-ms "${SOAK_SESSION_MS:-6000}" ${SOAK_ARGS:-}
done
echo "soak: passed"
