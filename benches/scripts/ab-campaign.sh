#!/usr/bin/env bash
# Alternating A/B campaign of the load generator's shapes (BENCHMARKS.md, "The core
# redesign"): three rounds; in each, every shape with build A, then build B. Usage:
#   bash benches/scripts/ab-campaign.sh A_TARGET_DIR B_TARGET_DIR > campaign.log
# where each target directory holds a release build of baatkaro-server and
# baatkaro-load (e.g. a git worktree of the older commit with its own target dir).
set -u
A=$1 B=$2
SHAPES=(
  "1x100|--groups 1 --members 100 --messages 1000"
  "10x10|--groups 10 --members 10 --messages 5000"
  "pairs50|--private --members 100 --messages 2000"
  "open1M|--groups 1 --members 100 --messages 300 --rate 10000"
)
for round in 1 2 3; do
  for shape in "${SHAPES[@]}"; do
    name=${shape%%|*} args=${shape#*|}
    for build in A B; do
      dir=$A; [ "$build" = B ] && dir=$B
      # shellcheck disable=SC2086
      out=$(timeout 300 taskset -c 1 "$dir/release/baatkaro-load" --pin --json $args 2>/dev/null | tail -1)
      echo "$round $name $build $out"
    done
  done
done
