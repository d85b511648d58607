#!/usr/bin/env bash
# End-to-end `dvc repro --force` time (every stage reruns) and no-op `dvc repro` time (all
# stages up to date: what a user waits for when nothing changed) in a DVC project folder.
#
#   bash benchmarks/repro_time.sh /tmp/twotower-copy          # a copy, not the main checkout
#   bash benchmarks/repro_time.sh /tmp/twotower-copy evaluate # only up to a target stage
#
# The forced run rewrites the folder's outputs and dvc.lock: point it at a scratch copy of
# the project (git clone + dvc pull, or a copy with data/raw), never at a checkout where
# experiments are running, with data/raw in its DVC cache as `dvc pull` leaves it (else
# `dvc commit -f data/raw.dvc` first). Run it with the project's environment active.
# `compare` reads ../shared/data/trec-dl-2019: outside a checkout that has it, give a target.
set -euo pipefail

project=${1:?usage: repro_time.sh PROJECT_DIR [TARGET]}
target=${2:-}
cd "$project"

seconds() {  # wall seconds of a command; its output goes to repro_time.log
  local start=$EPOCHREALTIME
  "$@" >>repro_time.log 2>&1 || { echo "failed: $* (see $PWD/repro_time.log)" >&2; return 1; }
  awk "BEGIN { print $EPOCHREALTIME - $start }"
}

echo "cores: $(getconf _NPROCESSORS_ONLN) (OMP_NUM_THREADS ${OMP_NUM_THREADS:-unset});" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg); dvc $(dvc --version | head -1) in $PWD"
forced=$(seconds dvc repro --force $target)
printf 'dvc repro --force %s: %.1f s\n' "$target" "$forced"
noop=$(seconds dvc repro $target)
printf 'dvc repro (no-op) %s: %.2f s\n' "$target" "$noop"
