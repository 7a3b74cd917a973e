#!/usr/bin/env python3
"""Writes synthetic-lte-60s.trace: a deterministic, synthetic mahimahi trace.

60 s of capacity wandering between 2 and 14 Mbit/s in 500 ms steps (a seeded
random walk), with 0.3 Mbit/s for one second at 30 s. Not a measurement: a
stand-in with the shape of a cellular downlink, for tests and examples.
"""
import random

random.seed(20261121)
lines = []
level = 8.0
for step in range(120):  # 120 steps of 500 ms
    level = min(14.0, max(2.0, level + random.uniform(-2.0, 2.0)))
    rate = 0.3 if 60 <= step < 62 else level  # Mbit/s
    per_ms = rate * 1e6 / 8 / 1500 / 1000  # 1500-byte opportunities per ms
    acc = 0.0
    for ms in range(step * 500 + 1, step * 500 + 501):
        acc += per_ms
        while acc >= 1.0:
            lines.append(ms)
            acc -= 1.0
with open("synthetic-lte-60s.trace", "w") as f:
    f.write("\n".join(map(str, lines)) + "\n")
