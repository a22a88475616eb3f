#!/usr/bin/env bash
# How long the server's commits wait for the disk: the durations of every fdatasync
# the server makes during 3 s of one run (perf trace, which needs root or
# perf_event_paranoid <= 1), with their median, p90, p99 and maximum in ms, then the
# run's own report. Usage (BENCHMARKS.md, "The disk's share"):
#   bash benches/scripts/sync-times.sh target/release --groups 1 --members 100 --messages 400 --rate 10000
set -u
bin=$1
shift
out=$(mktemp)
trap 'rm -f "$out" "$out.json"' EXIT
taskset -c 1 "$bin/baatkaro-load" --pin --json "$@" > "$out.json" 2>/dev/null &
load=$!
pid=""
for _ in $(seq 1 50); do
  pid=$(pgrep -n -x baatkaro-server) && break
  sleep 0.1
done
[ -n "$pid" ] || { echo "no server started" >&2; exit 1; }
# Past the generator's logins, into the run itself.
sleep 0.3
timeout 3 perf trace -e fdatasync -p "$pid" 2>&1 | grep fdatasync > "$out"
wait "$load"
awk -F'[( ]+' '{print $3}' "$out" | sort -n | awk '
  { a[NR] = $1; s += $1 }
  END { if (NR == 0) { print "no fdatasync seen"; exit }
        printf "fdatasync n %d mean %.3f p50 %.3f p90 %.3f p99 %.3f max %.3f ms\n",
          NR, s / NR, a[int(NR * 0.5) + 1], a[int(NR * 0.9) + 1], a[int(NR * 0.99) + 1], a[NR] }'
tail -1 "$out.json"
