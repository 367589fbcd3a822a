#!/usr/bin/env python3
"""The streaming-anomaly peer: River's HalfSpaceTrees over per-user features, scored before
it learns each event, as a Python quixstreams + River pipeline would run it. Prints its
PR-AUC and ROC-AUC on a labelled event file, to compare with `walletguard eval` on the same
file (issue 26).

    pip install river
    python3 benches/river_peer.py --events ../shared/data/sparkov.jsonl.gz \
        --labels ../shared/data/sparkov_labels.csv.gz [--walletguard target/release/walletguard]

With --walletguard it also runs `walletguard eval` on the same files with the default config
and prints both figures side by side.

Seven features per event, each from the user's own history before the event (a new user
starts from zeros), scaled into [0, 1] as HalfSpaceTrees expects:
  1. ln(1 + amount)                       4. the share of the user's past events in this hour
  2. z of ln(1 + amount) vs the user's    5. a never-seen counterparty
  3. amount / the user's running mean     6. seconds since the user's last event (log)
                                          7. money out (payment, transfer, withdrawal, recharge)
"""
import argparse
import csv
import gzip
import json
import math
import re
import subprocess
import sys
import tempfile
from datetime import datetime

MONEY_OUT = {"payment", "transfer", "withdrawal", "mobile_recharge"}


def opener(path):
    return gzip.open(path, "rt") if path.endswith(".gz") else open(path)


def ts_seconds(ts):
    if isinstance(ts, (int, float)):
        return ts / 1000.0
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def features(users, e):
    """The event's features from the user's state, then the state updated with the event."""
    u = users.setdefault(e["user_id"], {"n": 0, "mean": 0.0, "m2": 0.0, "amt": 0.0,
                                         "hours": [0] * 24, "cps": set(), "last": None})
    amount = float(e.get("amount") or 0.0)
    x = math.log1p(max(amount, 0.0))
    t = ts_seconds(e["ts"])
    hour = datetime.utcfromtimestamp(t).hour
    n = u["n"]
    sd = math.sqrt(u["m2"] / n) if n > 1 else 1.0
    z = (x - u["mean"]) / max(sd, 0.1) if n > 1 else 0.0
    ratio = amount / u["amt"] if u["amt"] > 0 else 1.0
    hour_share = u["hours"][hour] / n if n else 0.0
    cp = e.get("counterparty")
    new_cp = 1.0 if cp is not None and cp not in u["cps"] else 0.0
    gap = math.log1p(max(t - u["last"], 0.0)) if u["last"] is not None else 16.0
    out = 1.0 if e.get("type") in MONEY_OUT else 0.0
    f = {
        "log_amount": min(x / 20.0, 1.0),
        "z": min(max((z + 5.0) / 10.0, 0.0), 1.0),
        "ratio": min(math.log1p(ratio) / 5.0, 1.0),
        "hour_share": hour_share,
        "new_counterparty": new_cp,
        "gap": min(gap / 16.0, 1.0),
        "money_out": out,
    }
    # Learn the event into the user's state.
    n1 = n + 1
    d = x - u["mean"]
    u["mean"] += d / n1
    u["m2"] += d * (x - u["mean"])
    u["amt"] += (amount - u["amt"]) / n1
    u["n"] = n1
    u["hours"][hour] += 1
    if cp is not None:
        u["cps"].add(cp)
    u["last"] = t
    return f


def pr_auc(scores, labels):
    """Average precision (the PR-AUC `walletguard eval` reports)."""
    pairs = sorted(zip(scores, labels), key=lambda p: -p[0])
    pos = sum(labels)
    if pos == 0:
        return float("nan")
    tp = fp = 0
    ap = 0.0
    i = 0
    while i < len(pairs):
        j = i
        dtp = dfp = 0
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            dtp += pairs[j][1]
            dfp += 1 - pairs[j][1]
            j += 1
        tp += dtp
        fp += dfp
        ap += dtp / pos * (tp / (tp + fp))
        i = j
    return ap


def roc_auc(scores, labels):
    pairs = sorted(zip(scores, labels), key=lambda p: p[0])
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2.0
        rank_sum += avg_rank * sum(p[1] for p in pairs[i:j])
        i = j
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--trees", type=int, default=25)
    ap.add_argument("--height", type=int, default=15)
    ap.add_argument("--window", type=int, default=250)
    ap.add_argument("--walletguard", help="also run `walletguard eval` on the same files")
    a = ap.parse_args()
    from river import anomaly

    labels = {}
    with opener(a.labels) as f:
        for row in csv.DictReader(f):
            labels[row["event_id"]] = int(row["label"])
    model = anomaly.HalfSpaceTrees(n_trees=a.trees, height=a.height, window_size=a.window,
                                   seed=a.seed)
    users = {}
    scores, ys = [], []
    with opener(a.events) as f:
        for line in f:
            try:
                e = json.loads(line)
                e["user_id"], e["ts"]
            except (ValueError, KeyError, TypeError):
                continue
            x = features(users, e)
            scores.append(model.score_one(x))
            model.learn_one(x)
            ys.append(labels.get(e.get("event_id"), 0))
    peer = (pr_auc(scores, ys), roc_auc(scores, ys))
    print(f"river HalfSpaceTrees: events {len(ys)}, fraud {sum(ys)}, "
          f"PR-AUC {peer[0]:.4f}, ROC-AUC {peer[1]:.4f}")
    if a.walletguard:
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([a.walletguard, "eval", "--events", a.events, "--labels",
                                a.labels, "--out", out], capture_output=True, text=True)
            m = re.search(r"PR-AUC ([0-9.]+)\s+ROC-AUC ([0-9.]+)", r.stdout)
            if r.returncode != 0 or not m:
                sys.exit(f"walletguard eval failed: {r.stderr[-500:]}")
            wg = (float(m.group(1)), float(m.group(2)))
        print(f"walletguard:          PR-AUC {wg[0]:.4f}, ROC-AUC {wg[1]:.4f}; "
              f"{wg[0] / peer[0]:.1f}x the peer's PR-AUC (goal: 3x)")


if __name__ == "__main__":
    main()
