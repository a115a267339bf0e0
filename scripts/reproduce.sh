#!/usr/bin/env bash
# Regenerate every committed result folder and the leaderboard with the current code, from an empty
# cache, resumably, and record each step's wall time.
#
#   bash scripts/reproduce.sh [DATA_ROOT] [CACHE_DIR]
#
# DATA_ROOT: the datasets in torchvision's layout (default ../shared/datasets). CACHE_DIR: the model
# and cell cache (default ~/.cache/attractor-bench-reproduce; give an empty folder to start from
# nothing). Stopped anywhere (Ctrl-C, SIGTERM, a kill, a stopped machine), the same command continues:
# trainings resume from their last saved epoch (attractor_bench/checkpoints.py), finished cells come
# from the cell store, finished steps take seconds. Results go to results/.
#
# Steps: 1. `attractor-bench train` every model of every suite (one training per preset, shared by
# every suite); 2. each classification suite; 3. the OOD suites; 4. the paper's other readings and
# their seed spread (results/readings); 5. the leaderboard and the reproduction document.
# Each step's wall time is appended to CACHE_DIR/reproduce-times.tsv (step, seconds, finished at,
# this call's start, and "stopped" for the part of a step a stopped call ran) and printed; docs/reproducing.md gives a whole run's times.
# suites/leaderboard_full.yaml (all 10,000 test images) is not part of it: it is the run for a GPU
# machine (SUITES="leaderboard_full" bash scripts/reproduce.sh). SKIP="mnist_fgsm leaderboard ..." skips the steps it
# names: on a machine whose cache was lost, the steps already committed, which an empty cache would compute again
# (`train` then takes the zoo's weights, the regeneration's own). The cells are computed in WORKERS
# processes, a classification suite's and an OOD suite's alike (default: one per core; the tables are those of
# one process: docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/datasets}"
cache="${2:-$HOME/.cache/attractor-bench-reproduce}"
suites="${SUITES:-mnist_fgsm mnist_adaptive leaderboard leaderboard_sota leaderboard_attractor_at}"
readings="mnist_fgsm_readings mnist_fgsm_seeds"
oods="ood ood_apudae ood_cnn_at ood_attractor_at"
workers="${WORKERS:-$(nproc)}"
mkdir -p "$cache"
times="$cache/reproduce-times.tsv"
call="$(date -u +%FT%TZ)"
echo "data: $data; cache: $cache; suites: $suites; workers: $workers; step times: $times"
running="" running_start=0
record() {  # record NAME START [stopped]: append the step's seconds so far to the times file
    local row
    row="$(printf '%s\t%s\t%s\t%s' "$1" "$(( SECONDS - $2 ))" "$(date -u +%FT%TZ)" "$call")"
    printf '%s%s\n' "$row" "${3:+$'\t'$3}" >> "$times"
}
# a call stopped mid-step (Ctrl-C, SIGTERM, an error) still records that step's part, marked "stopped", so that
# the parts of a step spread over several calls add up to its whole time
trap '[[ -n "$running" ]] && record "$running" "$running_start" stopped' EXIT
step() {  # step NAME COMMAND...: run it, record its wall time (or skip it when SKIP names it)
    if [[ " ${SKIP:-} " == *" $1 "* ]]; then echo "step $1: skipped (SKIP)"; return; fi
    running="$1" running_start=$SECONDS
    shift
    "$@"
    record "$running" "$running_start"
    echo "step $running: $(( SECONDS - running_start )) s"
    running=""
}
total=$SECONDS
all_suites="$suites"
[[ -z "${SUITES:-}" ]] && all_suites="$suites $readings"
step train attractor-bench train $(for s in $all_suites; do echo "suites/$s.yaml"; done) \
    --data-root "$data" --cache-dir "$cache" --no-download
for s in $suites; do
    step "$s" attractor-bench run "suites/$s.yaml" --data-root "$data" --cache-dir "$cache" --workers "$workers" --no-download
done
if [[ -z "${SUITES:-}" ]]; then
    for s in $oods; do  # OOD detection under attack, on the same trainings
        step "$s" attractor-bench ood "suites/$s.yaml" --data-root "$data" --cache-dir "$cache" --workers "$workers" --no-download
    done
    for s in $readings; do  # the paper's other readings and their seed spread (docs/REPRODUCTION.md, docs/results.md)
        step "$s" attractor-bench run "suites/$s.yaml" --results-dir results/readings --data-root "$data" \
            --cache-dir "$cache" --workers "$workers" --no-download
    done
fi
step leaderboard_tables attractor-bench leaderboard --results-dir results  # its own name: `leaderboard` is a suite step
step reproduction attractor-bench reproduction --results-dir results
echo "all (this call): $(( SECONDS - total )) s; every call's steps: $times"
# each step's seconds summed over every call of this cache (a resumed step counts each call's part)
awk -F'\t' '!($1 in s) {order[++n] = $1} {s[$1] += $2; all += $2}
    END {print "every call, per step:"; for (i = 1; i <= n; i++) printf "  %-28s %7d s\n", order[i], s[order[i]];
         printf "  %-28s %7d s\n", "all", all}' "$times"
