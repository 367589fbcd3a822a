#!/usr/bin/env python3
"""Inject a compromise pattern we did not tune on into third-party events: for a random share
of users, every amount is multiplied by a factor for a window of days (a compromised customer
whose spending jumps), and those events are labelled as attacks. The original attack events
are dropped, so the injected pattern is the only fraud. Writes JSON lines and a labels CSV in
the shape `walletguard eval --labels` reads.

    python3 benches/inject_jump.py --events ../shared/data/sparkov.jsonl.gz \\
        --labels ../shared/data/sparkov_labels.csv.gz --out /tmp/inj.jsonl.gz \\
        --out-labels /tmp/inj_labels.csv [--share 0.3 --factor 5 --days 14 --seed 7]
    walletguard eval --events /tmp/inj.jsonl.gz --labels /tmp/inj_labels.csv
"""
import argparse
import csv
import datetime
import gzip
import json
import random


def opener(path, mode="rt"):
    return gzip.open(path, mode) if path.endswith(".gz") else open(path, mode)


def epoch(ts):
    if isinstance(ts, (int, float)):
        return ts / 1000 if ts > 1e11 else ts
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--out-labels", required=True)
    ap.add_argument("--share", type=float, default=0.3, help="share of users compromised")
    ap.add_argument("--factor", type=float, default=5.0, help="amount multiplier")
    ap.add_argument("--days", type=float, default=14.0, help="length of the jump")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    attack = {r["event_id"] for r in csv.DictReader(opener(a.labels)) if r["label"] == "1"}
    events = [json.loads(line) for line in opener(a.events)]
    events = [e for e in events if e["event_id"] not in attack]
    first, last = min(epoch(e["ts"]) for e in events), max(epoch(e["ts"]) for e in events)
    span = max(last - first - a.days * 86400, 0.0)
    users = sorted({e["user_id"] for e in events})
    start = {u: first + rng.uniform(0.1, 0.9) * span for u in users if rng.random() < a.share}
    jumped = 0
    with opener(a.out, "wt") as out, open(a.out_labels, "w", newline="") as lf:
        w = csv.writer(lf)
        w.writerow(["event_id", "user_id", "label", "scenario", "benign_kind", "amount"])
        for e in events:
            t, s = epoch(e["ts"]), start.get(e["user_id"])
            y = int(s is not None and s <= t < s + a.days * 86400 and e.get("amount") is not None)
            if y:
                e["amount"] = round(e["amount"] * a.factor, 2)
                jumped += 1
            out.write(json.dumps(e) + "\n")
            w.writerow([e["event_id"], e["user_id"], y, "amount_jump" if y else "", "", e.get("amount", "")])
    print(f"events {len(events)}, users compromised {len(start)}, events jumped {jumped}")


if __name__ == "__main__":
    main()
