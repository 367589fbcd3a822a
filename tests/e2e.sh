#!/usr/bin/env bash
# End-to-end test against tansu, a real Apache-Kafka-compatible broker (run by .ci/run):
#   1. installs tansu if missing;
#   2. starts it on a free loopback port; `walletguard run` creates the topics;
#   3. streams a simulated world into wallet.events;
#   4. kills walletguard with -9 mid-stream and restarts it;
#   5. checks that every event got a decision (none lost; repeats identical), and that alerts
#      and commands arrived;
#   6. stops walletguard with SIGTERM and checks it exits 0;
#   7. commits an offset inside a record batch and checks walletguard starts exactly there.
# tansu 0.6 has no transactions, so this runs the default at-least-once mode.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TANSU_VERSION=0.6.0
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP_E2E:-0}" = 1 ]; then echo "e2e: logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
say() { echo "e2e: $*"; }
fail() {
  echo "e2e: FAILED: $*" >&2
  echo "--- walletguard log (tail)" >&2; tail -n 40 "$WORK/wg.log" >&2 || true
  echo "--- tansu log (tail)" >&2; tail -n 20 "$WORK/tansu.log" >&2 || true
  exit 1
}

if ! command -v tansu >/dev/null 2>&1; then
  say "installing tansu $TANSU_VERSION (cargo install; a few minutes)"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"

WG="${WG_E2E_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/walletguard}"
if [ -z "${WG_E2E_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url expected-code timeout-s
  python3 - "$1" "$2" "$3" <<'EOF'
import sys, time, urllib.request, urllib.error
url, code, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + limit
while time.time() < end:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == code: sys.exit(0)
    except urllib.error.HTTPError as e:
        if e.code == code: sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
}

PORT=$(free_port)
HPORT=$(free_port)
BROKER="127.0.0.1:$PORT"
say "starting tansu on $BROKER"
tansu broker --storage-engine memory://tansu/ \
  --listener-url "tcp://$BROKER" --advertised-listener-url "tcp://$BROKER" >"$WORK/tansu.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),1)" 2>/dev/null; then break; fi
  sleep 0.1
done

cat >"$WORK/wg.toml" <<EOF
[kafka]
brokers = "$BROKER"
group_id = "wg-e2e"
instance_id = "e2e"
decisions_topic = "wallet.decisions"
create_topics = true
partitions = 4
commit_interval_ms = 500
[kafka.consumer]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[http]
listen = "127.0.0.1:$HPORT"
[log]
format = "json"
EOF
"$WG" check-config --config "$WORK/wg.toml" >/dev/null

WGPID=""
start_wg() {
  "$WG" run --config "$WORK/wg.toml" >>"$WORK/wg.log" 2>&1 &
  WGPID=$!
  PIDS+=("$WGPID")
  wait_http "http://127.0.0.1:$HPORT/readyz" 200 60 || fail "walletguard not ready within 60 s"
}

say "starting walletguard"
start_wg

say "streaming a simulated world"
"$WG" simulate --users 400 --days 20 --seed 4 --attack-rate 0.08 --rate 3000 \
  --brokers "$BROKER" --topic wallet.events --labels "$WORK/labels.csv" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIMPID=$!
PIDS+=("$SIMPID")

sleep 6
say "kill -9 walletguard mid-stream, then restart it"
kill -9 "$WGPID"
wait "$WGPID" 2>/dev/null || true
start_wg

wait "$SIMPID" || fail "simulate failed: $(cat "$WORK/sim.err")"
SENT=$(sed -n 's/^sent \([0-9]*\) events.*/\1/p' "$WORK/sim.out")
[ -n "$SENT" ] && [ "$SENT" -gt 1000 ] || fail "simulate sent too little: $(cat "$WORK/sim.out")"
say "sent $SENT events; waiting for their decisions"

python3 - "$WG" "$BROKER" "$SENT" "$WORK" <<'EOF' || fail "decision check"
import json, subprocess, sys, time
wg, broker, sent, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def dump(topic, idle=3):
    out = subprocess.run([wg, "consume", "--brokers", broker, "--topic", topic,
                          "--idle-secs", str(idle)], capture_output=True, text=True, check=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]
deadline = time.time() + 180
while True:
    decisions = dump("wallet.decisions")
    by_id = {}
    for d in decisions:
        by_id.setdefault(d["event_id"], []).append(d)
    if len(by_id) >= sent or time.time() > deadline:
        break
    time.sleep(2)
labels = [l.split(",")[0] for l in open(f"{work}/labels.csv").read().splitlines()[1:]]
missing = [e for e in labels if e not in by_id]
if missing:
    sys.exit(f"{len(missing)} of {len(labels)} events have no decision, e.g. {missing[:3]}")
dups = {k: v for k, v in by_id.items() if len(v) > 1}
differ = [k for k, v in dups.items() if any(x != v[0] for x in v)]
if differ:
    sys.exit(f"{len(differ)} events got different repeated decisions, e.g. {dups[differ[0]]}")
alerts = dump("wallet.alerts", 2)
commands = dump("wallet.commands", 2)
freezes = [c for c in commands if c["command"] == "freeze_account"]
if not alerts or not freezes:
    sys.exit(f"expected alerts and freezes, got {len(alerts)} alerts, {len(freezes)} freezes")
ids = {}
for a in alerts:
    ids.setdefault(a["event_id"], set()).add(a["alert_id"])
if any(len(s) > 1 for s in ids.values()):
    sys.exit("an event got two different alert ids")
print(f"e2e: {len(labels)} events, all decided ({len(decisions)} decision records, "
      f"{len(dups)} reprocessed after the kill, all identical); {len(alerts)} alerts, "
      f"{len(freezes)} freeze commands")
EOF

say "SIGTERM: walletguard must drain and exit 0"
kill -TERM "$WGPID"
if wait "$WGPID"; then say "clean exit"; else fail "exit code $? after SIGTERM"; fi

# A start inside a record batch. tansu answers a fetch from inside a batch with the next batch
# (tests/probes/tansu_fetch_probe.rs shows it without walletguard); walletguard must still start
# exactly at the committed offset. 2,000 non-JSON records in batches of 100, offset 150
# committed: the dead letters must be offsets 150..1999, no more, no fewer.
say "start inside a batch: committed 150 of batches of 100"
(cd "$ROOT" && cargo build --release --quiet --example tansu_fetch_probe)
PROBE="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/tansu_fetch_probe"
HPORT2=$(free_port)
cat >"$WORK/guard.toml" <<EOF
[kafka]
brokers = "$BROKER"
group_id = "wg-e2e-guard"
instance_id = "e2e-guard"
input_topics = ["guard.events"]
dlq_topic = "guard.dlq"
changelog_topic = "guard.profiles"
create_topics = true
partitions = 1
[http]
listen = "127.0.0.1:$HPORT2"
[log]
format = "json"
EOF
"$WG" run --config "$WORK/guard.toml" >>"$WORK/wg.log" 2>&1 &
GPID=$!
PIDS+=("$GPID")
wait_http "http://127.0.0.1:$HPORT2/readyz" 200 60 || fail "walletguard (guard) not ready"
kill -TERM "$GPID"
wait "$GPID" || fail "guard run: exit $? after SIGTERM"
TOPIC=guard.events GROUP=wg-e2e-guard COMMIT_AT=150 "$PROBE" "$BROKER" >/dev/null || fail "probe set-up"
"$WG" run --config "$WORK/guard.toml" >>"$WORK/wg.log" 2>&1 &
GPID=$!
PIDS+=("$GPID")
python3 - "$WG" "$BROKER" <<'EOF' || fail "start inside a batch"
import json, subprocess, sys, time
wg, broker = sys.argv[1], sys.argv[2]
deadline = time.time() + 60
while True:
    out = subprocess.run([wg, "consume", "--brokers", broker, "--topic", "guard.dlq",
                          "--idle-secs", "3"], capture_output=True, text=True).stdout
    offs = sorted({json.loads(l)["offset"] for l in out.splitlines() if l.strip()})
    if len(offs) >= 1850 or time.time() > deadline:
        break
    time.sleep(2)
if offs != list(range(150, 2000)):
    sys.exit(f"dead letters cover {len(offs)} offsets from {offs[:1]} to {offs[-1:]}, want 150..1999")
print("e2e: started exactly at the committed offset 150 (1850 records)")
EOF
kill -TERM "$GPID"
wait "$GPID" || fail "guard run: exit $? after SIGTERM"
say "passed"
