#!/usr/bin/env bash
# Counts the instructions the server spends per delivery in one load-generator shape,
# under valgrind's callgrind: a figure that repeats to about 1 % from run to run on a
# machine whose timings move by tens of per cent (BENCHMARKS.md, "Counting
# instructions"). It leaves out the kernel (sockets, fsync) and waiting, so it
# compares builds' own code, not their speed. Usage:
#   bash benches/scripts/callgrind.sh TARGET_DIR NAME [load-generator shape...]
# e.g.
#   bash benches/scripts/callgrind.sh target/release before --groups 10 --members 10 --messages 200
# where TARGET_DIR holds release builds of baatkaro-server and baatkaro-load. Writes
# /tmp/callgrind-NAME.out (open it with callgrind_annotate) and prints the count.
set -euo pipefail
bin=$1 name=$2
shift 2
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
port=$((20000 + RANDOM % 20000))
out=/tmp/callgrind-$name.out
# The same budgets the load generator gives the server it starts itself.
valgrind --tool=callgrind --callgrind-out-file="$out" "$bin/baatkaro-server" \
    --insecure-test-hash --log warn --logins-per-minute 1000000 --max-per-address 100000 \
    --max-connections 100000 --limit-rate 1000000 --limit-burst 1000000 \
    --limit-queue 67108864 --no-web --listen "127.0.0.1:$port" --data-dir "$dir/data" \
    >"$dir/server.log" 2>&1 &
server=$!
# Up to a minute for the server to listen under valgrind.
for _ in $(seq 1 300); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
done
"$bin/baatkaro-load" --server "127.0.0.1:$port" --json "$@" | tail -1 >"$dir/load.json"
# A clean stop, so that callgrind writes its counts.
kill -TERM "$server"
wait "$server" || true
python3 - "$out" "$dir/load.json" "$name" <<'EOF'
import json, sys
out, load, name = sys.argv[1:]
total = next(int(l.split()[1]) for l in open(out) if l.startswith(('summary:', 'totals:')))
j = json.load(open(load))
bad = j['lost'] + j['duplicated'] + j['reordered']
print(f"{name}: {total} instructions, {j['delivered']} deliveries, "
      f"{total / j['delivered']:.0f} a delivery, {bad} lost/duplicated/reordered")
EOF
