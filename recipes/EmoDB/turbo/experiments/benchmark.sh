#!/usr/bin/env bash
# The EmoDB table of docs/results.md: every configuration over 3 seeds
# on test fold 4 (validation: fold 5), encoders trained from scratch
# (hparams/small.yaml), one CPU thread per run, then
# results/emodb_benchmark/summary.md. Run from recipes/EmoDB/turbo:
#   bash experiments/benchmark.sh /path/to/EmoDB [JOBS]
set -euo pipefail
data=${1:?usage: benchmark.sh /path/to/EmoDB [JOBS]}
jobs=${2:-1}
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
root=results/emodb_benchmark
sweep() {
    local name=$1
    shift
    cross_validate small.yaml --name "$name" --folds 4 --seeds 1 2 3 \
        --jobs "$jobs" --output_root "$root" -- "$@"
}
sweep audio_only '--modalities=[audio]' --turbo_weight=0 --twin_pass=False
sweep text_only '--modalities=[text]' --turbo_weight=0 --twin_pass=False
sweep baseline --turbo_weight=0 --twin_pass=False
# Turbo without the warm-up of turbo_weight (the recipe's default: 5 epochs).
sweep turbo --turbo_warmup_epochs=0
# Modality dropout (the text says nothing about the emotion here).
sweep baseline_modality_dropout --turbo_weight=0 --twin_pass=False \
    --modality_dropout=0.5
sweep turbo_modality_dropout --modality_dropout=0.5 --turbo_warmup_epochs=0
# The other uses of the two views.
sweep turbo_consistency --consistency_weight=1.0 --turbo_warmup_epochs=0
sweep turbo_label_positives --label_positives=True --turbo_warmup_epochs=0
sweep turbo_warmup --turbo_warmup_epochs=5
# The two best on validation together.
sweep turbo_warmup_label_positives --turbo_warmup_epochs=5 \
    --label_positives=True
python -m speechbrain_turbo.cross_validate "$root" --paired_with baseline
