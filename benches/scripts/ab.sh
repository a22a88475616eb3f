#!/usr/bin/env bash
# Alternating builds: each round runs every shape with each build directory in turn
# (a directory holding a release baatkaro-server and baatkaro-load, e.g. copied from
# target/release at each commit). Prints round|shape|build|json, which medians.py
# reads (the build directory's name is the label). Usage:
#   bash benches/scripts/ab.sh 6 "/tmp/before /tmp/after" "--groups 10 --members 10 --messages 5000" > ab.log
#   python3 benches/scripts/medians.py < ab.log
set -u
rounds=$1 builds=$2
shift 2
for round in $(seq 1 "$rounds"); do
  for shape in "$@"; do
    for dir in $builds; do
      # shellcheck disable=SC2086
      out=$(timeout 300 taskset -c 1 "$dir/baatkaro-load" --pin --json $shape 2>/dev/null | tail -1)
      echo "$round|$shape|$(basename "$dir")|$out"
    done
  done
done
