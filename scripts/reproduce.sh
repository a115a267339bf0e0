#!/usr/bin/env bash
# Regenerate every committed result folder and the leaderboard with the current code, one training
# per model preset shared by every suite (the model cache), and print the wall time of each step.
#
#   bash scripts/reproduce.sh [DATA_ROOT] [CACHE_DIR]
#
# DATA_ROOT: the datasets in torchvision's layout (default ../shared/datasets); CACHE_DIR: the model
# and cell cache (default: a new empty folder under /tmp, so that every model is trained here; give
# an existing cache to reuse its trained models and finished cells). Results go to results/.
# On 2 CPU cores from an empty cache: see docs/reproducing.md for the times
# measured. suites/leaderboard_full.yaml (all 10,000 test images) is not part of it: it is the run
# for a GPU machine (bash scripts/reproduce.sh with SUITES="leaderboard_full"). The cells are
# computed in WORKERS processes (default: one per core; the tables are those of one process, to
# the last digit where the CPU's kernels do not depend on the thread split: docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/datasets}"
cache="${2:-$(mktemp -d /tmp/attractor-bench-cache.XXXXXX)}"
suites="${SUITES:-mnist_fgsm mnist_adaptive leaderboard leaderboard_sota leaderboard_attractor_at}"
workers="${WORKERS:-$(nproc)}"
echo "data: $data; cache: $cache; suites: $suites; workers: $workers"
total=$SECONDS
for s in $suites; do
    start=$SECONDS
    attractor-bench run "suites/$s.yaml" --data-root "$data" --cache-dir "$cache" --workers "$workers" --no-download
    echo "suite $s: $(( SECONDS - start )) s"
done
if [[ -z "${SUITES:-}" ]]; then  # OOD detection under attack, on the same trainings (issue 18)
    start=$SECONDS
    for s in ood ood_apudae ood_cnn_at ood_attractor_at; do
        attractor-bench ood "suites/$s.yaml" --data-root "$data" --cache-dir "$cache" --no-download
    done
    echo "ood suites: $(( SECONDS - start )) s"
fi
if [[ -z "${SUITES:-}" ]]; then  # the paper's other readings, and their seed spread, for docs/REPRODUCTION.md and docs/results.md (issue 19)
    start=$SECONDS
    for s in mnist_fgsm_readings mnist_fgsm_seeds; do
        attractor-bench run "suites/$s.yaml" --results-dir results/readings --data-root "$data" \
            --cache-dir "$cache" --workers "$workers" --no-download
    done
    echo "suites mnist_fgsm_readings, mnist_fgsm_seeds: $(( SECONDS - start )) s"
fi
attractor-bench leaderboard --results-dir results
attractor-bench reproduction --results-dir results
echo "all: $(( SECONDS - total )) s"
