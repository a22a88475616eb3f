#!/usr/bin/env python3
"""Medians of a campaign log (lines `round|shape|build|json`, as redis-campaign.sh
and ab-campaign-style loops print): per shape and build, the median deliveries/s
with every run's, the latency percentiles, the server's CPU and RSS, the
generator's CPU (a figure taken above 85 % of its core is a lower bound), in open
loop how late the generator itself wrote messages against their schedule (part of
every latency), and how many deliveries were lost, duplicated or reordered (0 in a
good run). Where a shape ran against Redis too (a build named `redis`), each
round's ratio to it follows: throughput (BaatKaro over Redis, higher is better),
and p99 latency and server CPU (BaatKaro over Redis, lower is better)."""
import collections
import json
import statistics
import sys

runs = collections.defaultdict(list)
# (shape, build) -> {round: json}, for the ratios of one round's runs.
by_round = collections.defaultdict(dict)
for line in sys.stdin:
    parts = line.rstrip("\n").split("|", 3)
    if len(parts) < 4 or not parts[3].startswith("{"):
        continue
    j = json.loads(parts[3])
    runs[(parts[1], parts[2])].append(j)
    if parts[0] in by_round[(parts[1], parts[2])]:
        # Two logs joined, say: the ratios would pair only the last of them.
        print(f"warning: round {parts[0]} of {parts[1]} {parts[2]} twice; ratios use the last",
              file=sys.stderr)
    by_round[(parts[1], parts[2])][parts[0]] = j

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
        f" peak rss {median('server_rss_bytes') / 1e6:.0f} MB gen {gen:.0f} %{bound} bad {bad}"
    )
    # Each run's RSS sampled at the end of each quarter of it, then its peak: a
    # median across runs would hide one run's growth.
    each_rss = [
        f"{'/'.join(f'{v / 1e6:.0f}' for v in j['server_rss_quarters'])} (peak "
        f"{j['server_rss_bytes'] / 1e6:.0f})"
        for j in js if j.get("server_rss_quarters") and j.get("server_rss_bytes")
    ]
    if each_rss:
        print(f"{'':52} {'':8} rss by quarter, each run, MB: {'; '.join(each_rss)}")


def ratios(shape, build):
    """Each round's ratios of `build` to Redis on `shape`, and their medians."""
    ours, theirs = by_round.get((shape, build), {}), by_round.get((shape, "redis"), {})
    rounds = sorted(set(ours) & set(theirs), key=lambda r: (len(r), r))
    if not rounds:
        return
    line = []
    for key, label in [("deliveries_per_sec", "throughput"), ("p99_us", "p99"),
                       ("server_cpu_s", "cpu")]:
        each = [ours[r][key] / theirs[r][key] for r in rounds
                if ours[r].get(key) and theirs[r].get(key)]
        if each:
            line.append(f"{label} {statistics.median(each):.2f} [{', '.join(f'{x:.2f}' for x in each)}]")
    print(f"{shape:52} {build:8} over redis, by round: " + "; ".join(line))


for shape, build in sorted(runs):
    if build != "redis":
        ratios(shape, build)
