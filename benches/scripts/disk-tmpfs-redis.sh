#!/usr/bin/env bash
# What the disk adds: each shape run three ways in turn, ROUNDS times — BaatKaro with
# its data directory on the disk (the default temporary directory), BaatKaro on tmpfs
# (/dev/shm: fdatasync returns at once) and Redis pub/sub, which stores nothing
# (BENCHMARKS.md, "What the disk adds"). Usage:
#   cargo build --release -p baatkaro-server -p baatkaro-benches
#   bash benches/scripts/disk-tmpfs-redis.sh target/release 5 > tmpfs.log
#   python3 benches/scripts/medians.py < tmpfs.log
# The shapes are the latency targets of issue 17 unless given after the rounds.
# /tmp must be on the disk being measured; /dev/shm must be a tmpfs.
set -u
bin=$1 rounds=${2:-5}
shift $(($# < 2 ? $# : 2))
shapes=("$@")
if [ ${#shapes[@]} -eq 0 ]; then
  shapes=(
    "--groups 1 --members 100 --messages 50 --rate 1000"
    "--groups 1 --members 100 --messages 300 --rate 10000"
    "--groups 1 --members 100 --messages 300 --rate 25000"
  )
fi
for round in $(seq 1 "$rounds"); do
  for shape in "${shapes[@]}"; do
    for where in disk tmpfs redis; do
      case $where in
        disk) dir=/tmp flag="" ;;
        tmpfs) dir=/dev/shm flag="" ;;
        redis) dir=/tmp flag="--redis" ;;
      esac
      # The generator starts the server with a data directory under TMPDIR.
      # shellcheck disable=SC2086
      out=$(TMPDIR=$dir timeout 300 taskset -c 1 "$bin/baatkaro-load" --pin --json $shape $flag \
        2>/dev/null | tail -1)
      echo "$round|$shape|$where|$out"
    done
  done
done
