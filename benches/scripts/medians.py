#!/usr/bin/env python3
"""Medians of a campaign log (lines `round|shape|build|json`, as redis-campaign.sh
and ab-campaign-style loops print): per shape and build, the median deliveries/s
with every run's, the latency percentiles, the server's CPU and RSS, the
generator's CPU (a figure taken above 85 % of its core is a lower bound), in open
loop how late the generator itself wrote messages against their schedule (part of
every latency), and how many deliveries were lost, duplicated or reordered (0 in a
good run)."""
import collections
import json
import statistics
import sys

runs = collections.defaultdict(list)
for line in sys.stdin:
    parts = line.rstrip("\n").split("|", 3)
    if len(parts) < 4 or not parts[3].startswith("{"):
        continue
    runs[(parts[1], parts[2])].append(json.loads(parts[3]))

for (shape, build), js in sorted(runs.items()):
    def median(key):
        values = [j[key] for j in js if j.get(key) is not None]
        return statistics.median(values) if values else 0

    each = ", ".join(f"{j['deliveries_per_sec'] / 1e6:.2f}" for j in js)
    bad = sum(j["lost"] + j["duplicated"] + j["reordered"] for j in js)
    gen = median("generator_cpu_pct")
    bound = " (lower bound)" if gen > 85 else ""
    late = ""
    if any(j.get("send_late_p99_us") is not None for j in js):
        late = (f" late p50/p99 {median('send_late_p50_us') / 1e3:.2f}/"
                f"{median('send_late_p99_us') / 1e3:.2f} ms")
    print(
        f"{shape:52} {build:8} n={len(js)} {median('deliveries_per_sec') / 1e6:.3f} M/s [{each}]"
        f" p50/p99/p99.9 {median('p50_us') / 1e3:.2f}/{median('p99_us') / 1e3:.2f}/"
        f"{median('p999_us') / 1e3:.2f} ms{late} cpu {median('server_cpu_s'):.2f} s"
        f" rss {median('server_rss_bytes') / 1e6:.0f} MB gen {gen:.0f} %{bound} bad {bad}"
    )
