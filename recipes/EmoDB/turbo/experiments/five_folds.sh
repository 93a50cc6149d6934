#!/usr/bin/env bash
# Every speaker pair as the test set once (folds 1-5; validation: the next
# fold), one seed, encoders trained from scratch (hparams/small.yaml): the
# default, the cross-entropy baseline, audio alone with cross-entropy and
# with Turbo's in-modal term, one CPU thread per run, then
# results/emodb_five_folds/summary.md. Run from recipes/EmoDB/turbo:
#   bash experiments/five_folds.sh /path/to/EmoDB [JOBS]
set -euo pipefail
data=${1:?usage: five_folds.sh /path/to/EmoDB [JOBS]}
jobs=${2:-1}
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
root=results/emodb_five_folds
sweep() {
    local name=$1
    shift
    cross_validate small.yaml --name "$name" --folds 1 2 3 4 5 --seeds 1 \
        --jobs "$jobs" --output_root "$root" -- "$@"
}
sweep turbo_warmup
sweep baseline --turbo_weight=0 --twin_pass=False
sweep audio_only '--modalities=[audio]' --turbo_weight=0 --twin_pass=False
sweep turbo_audio_only '--modalities=[audio]'
python -m speechbrain_turbo.cross_validate "$root" --paired_with baseline
