#!/usr/bin/env python3
"""Writes N wallet events as JSON lines, by default each with a user id never seen before: the
id-flood memory check (README, Core speed and memory).

    python3 benches/flood_ids.py 10000000 | walletguard replay --input -      # watch its RSS
    python3 benches/flood_ids.py 2000000 --users 1000000 > s1m.jsonl          # bytes per user
"""
import argparse
import sys

ap = argparse.ArgumentParser()
ap.add_argument("events", type=int)
ap.add_argument("--users", type=int, default=0, help="cycle over this many users (0: all new)")
a = ap.parse_args()
base = 1790000000000
out = sys.stdout
buf = []
for i in range(a.events):
    u = i % a.users if a.users else i
    buf.append('{"event_id":"f%d","user_id":"user-%d","ts":%d,"type":"payment","amount":12.5,'
               '"counterparty":"m-%d","device_id":"d-%d"}\n' % (i, u, base + i * 10, i % 1000, u))
    if len(buf) == 10000:
        out.write("".join(buf))
        buf = []
out.write("".join(buf))
