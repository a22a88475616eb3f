#!/usr/bin/env bash
# Server memory over four 10 groups x 10 members x 10,000 messages runs against one
# server (BENCHMARKS.md, "The core redesign"). Usage, from the repository root after
# `cargo build --release -p baatkaro-server -p baatkaro-benches`:
#   bash benches/scripts/rss-series.sh [TARGET_DIR]     (default: target)
set -u
T=${1:-target}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
taskset -c 0 "$T/release/baatkaro-server" --listen 127.0.0.1:0 --insecure-test-hash \
  --log warn,baatkaro_server::server=info --logins-per-minute 1000000 \
  --max-per-address 100000 --max-connections 100000 --limit-rate 1000000 \
  --limit-burst 1000000 --limit-queue 67108864 --data-dir "$DIR/data" 2> "$DIR/log" &
PID=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$DIR/log" && break; sleep 0.1; done
ADDR=$(grep -o 'listening on [0-9.:]*' "$DIR/log" | awk '{print $3}')
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$PID/status"; }
echo "start rss_mib=$(rss)"
for run in 1 2 3 4; do
  out=$(timeout 600 taskset -c 1 "$T/release/baatkaro-load" --server "$ADDR" --json \
    --groups 10 --members 10 --messages 10000 2>/dev/null | tail -1)
  echo "run $run $out rss_mib=$(rss)"
done
kill -TERM $PID
wait $PID
