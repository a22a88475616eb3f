#!/usr/bin/env bash
# Every target shape of issue 17, BaatKaro then Redis pub/sub, in ROUNDS rounds
# (BENCHMARKS.md, "Side by side with Redis in one run"): ratios measured in one run
# on whatever machine runs it. Usage:
#   cargo build --release -p baatkaro-server -p baatkaro-benches
#   bash benches/scripts/redis-campaign.sh target/release 3 > campaign.log
#   python3 benches/scripts/medians.py < campaign.log
# Shapes given after the rounds replace the targets' shapes, e.g. more rounds of one:
#   bash benches/scripts/redis-campaign.sh target/release 8 "--groups 10 --members 10 --messages 10000"
# Needs Debian's redis-server (apt-get install redis-server). The generator pins
# itself and the server it starts (core 0); it runs on core 1.
set -u
bin=$1 rounds=${2:-3}
shift $(($# < 2 ? $# : 2))
# 10,000 messages a member where the setup has it (10 x 10, 1 x 20); fewer
# where that would take minutes a run.
shapes=(
  "--groups 10 --members 10 --messages 10000"
  "--groups 1 --members 20 --messages 10000"
  "--groups 1 --members 100 --messages 1000"
  "--groups 1 --members 1000 --messages 20 --window 4"
  "--private --members 100 --messages 2000"
  "--groups 1 --members 100 --messages 50 --rate 1000"
  "--groups 1 --members 100 --messages 300 --rate 10000"
  "--groups 1 --members 100 --messages 300 --rate 25000"
)
if [ $# -gt 0 ]; then
  shapes=("$@")
fi
for round in $(seq 1 "$rounds"); do
  for shape in "${shapes[@]}"; do
    for target in baatkaro redis; do
      flag=""; [ "$target" = redis ] && flag="--redis"
      # shellcheck disable=SC2086
      out=$(timeout 300 taskset -c 1 "$bin/baatkaro-load" --pin --json $shape $flag 2>/dev/null | tail -1)
      echo "$round|$shape|$target|$out"
    done
  done
done
