"""Builds the mixed input of benches/identity.sh from the seed-12 simulation: its events from the
700,000th to the 1,000,000th (where the attacks have begun), with every 997th line broken (bad JSON, a missing field, a negative amount: dead
letters), an analyst's `case_verdict` of confirmed fraud after each of the first 150 fraud
events (list entries published, freezes), and a `false_positive` verdict after each of the
first 150 honest money-out events. Deterministic.

    python3 benches/identity_mixed.py S12_EVENTS.jsonl.gz S12_LABELS.csv OUT.jsonl
"""
import csv
import gzip
import json
import sys

events, labels, out = sys.argv[1:4]
fraud = set()
with open(labels) as f:
    for row in csv.DictReader(f):
        if row["label"] == "1":
            fraud.add(row["event_id"])
MONEY_OUT = {"payment", "transfer", "withdrawal", "mobile_recharge"}
broken = [
    lambda l: l[: len(l) // 2],
    lambda l: l.replace('"user_id"', '"uid"', 1),
    lambda l: l.replace('"amount":', '"amount":-', 1) if '"amount":' in l else "{}",
]
confirmed = cleared = 0
with gzip.open(events, "rt") as f, open(out, "w") as w:
    for i, line in enumerate(f):
        if i < 700_000:
            continue
        if i >= 1_000_000:
            break
        line = line.rstrip("\n")
        if i % 997 == 996:
            w.write(broken[(i // 997) % 3](line) + "\n")
            continue
        w.write(line + "\n")
        ev = json.loads(line)
        verdict = None
        if ev["event_id"] in fraud and confirmed < 150:
            verdict, confirmed = "confirmed_fraud", confirmed + 1
        elif ev["event_id"] not in fraud and ev["type"] in MONEY_OUT and cleared < 150 and i % 50 == 0:
            verdict, cleared = "false_positive", cleared + 1
        if verdict:
            v = {
                "event_id": "v-" + ev["event_id"],
                "user_id": ev["user_id"],
                "ts": ev["ts"],
                "type": "case_verdict",
                "ref_event_id": ev["event_id"],
                "verdict": verdict,
            }
            w.write(json.dumps(v, separators=(",", ":")) + "\n")
