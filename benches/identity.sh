#!/usr/bin/env bash
# Checksums of everything walletguard writes for a fixed set of inputs: decisions, alerts,
# commands (their wall-clock stamps blanked), dead letters, published list entries and the
# changelog records of the learned state (`replay --state-out`). A pure restructure must leave every line of this output unchanged; run it
# before and after and diff.
#
#   bash benches/identity.sh [path/to/walletguard] > before.txt
#
# Inputs: seed 12 (20,000 users, 30 days), a random world (seed 3007), a part of seed 12 with
# broken lines and analysts' verdicts mixed in (benches/identity_mixed.py), each over 4 emulated
# partitions too, and the development halves in ../shared/data when they are there.
set -euo pipefail
M=${1:-target/release/walletguard}
W=${IDENTITY_DIR:-/tmp/wg-identity}
D=${SHARED_DATA:-$(dirname "$0")/../../shared/data}
mkdir -p "$W"
[ -f "$W/s12.jsonl.gz" ] || "$M" simulate --users 20000 --days 30 --seed 12 --out "$W/s12.jsonl.gz" --labels "$W/s12.csv" >/dev/null
[ -f "$W/w3007.jsonl.gz" ] || "$M" simulate --world random --users 5000 --days 30 --seed 3007 --out "$W/w3007.jsonl.gz" --labels "$W/w3007.csv" >/dev/null
run() { # name input partitions
  local o="$W/out-$1"
  rm -rf "$o"; mkdir -p "$o"
  "$M" replay --input "$2" --partitions "$3" --decisions "$o/decisions" --alerts "$o/alerts" \
    --commands "$o/commands" --dlq "$o/dlq" --lists-out "$o/lists" --state-out "$o/state" >/dev/null
  for f in decisions alerts commands dlq lists state; do
    # The wall-clock stamps (`emitted_at`, `issued_at`) are the only fields that differ
    # between two runs of the same input.
    printf '%-14s %-9s %s\n' "$1" "$f" \
      "$(sed -E 's/"(issued_at|emitted_at)":"[^"]*"/"\1":""/g' "$o/$f" | sha256sum | cut -c1-16)"
  done
}
run s12 "$W/s12.jsonl.gz" 1
run s12-p4 "$W/s12.jsonl.gz" 4
# Dead letters, analysts' verdicts and the list entries a confirmed fraud publishes.
[ -f "$W/mixed.jsonl" ] || python3 "$(dirname "$0")/identity_mixed.py" "$W/s12.jsonl.gz" "$W/s12.csv" "$W/mixed.jsonl"
run mixed "$W/mixed.jsonl" 1
run mixed-p4 "$W/mixed.jsonl" 4
run w3007 "$W/w3007.jsonl.gz" 1
run w3007-p4 "$W/w3007.jsonl.gz" 4
for s in paysim paysim_nobal sparkov; do
  [ -f "$D/$s.jsonl.gz" ] && run "$s" "$D/$s.jsonl.gz" 1
done
