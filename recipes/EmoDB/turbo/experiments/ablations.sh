#!/usr/bin/env bash
# Which parts of the Turbo objective matter on EmoDB with pretrained encoders
# (hparams/whisper.yaml): the paper's objective, in-modal terms only,
# cross-modal terms only, and text alone, on every fold with seed 1, beside
# the runs of experiments/pretrained.sh (audio alone, baseline, Turbo) in
# the same folder; then results/emodb_pretrained/five_folds/summary.md,
# paired with the baseline. One CPU thread per run.
# Run from recipes/EmoDB/turbo, after experiments/pretrained.sh:
#   bash experiments/ablations.sh /path/to/EmoDB [PRETRAINED_FOLDER] [JOBS]
set -euo pipefail
data=${1:?usage: ablations.sh /path/to/EmoDB [PRETRAINED_FOLDER] [JOBS]}
pretrained=$(realpath "${2:-$HOME/.cache/speechbrain_turbo/pretrained}")
jobs=${3:-1}
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
root=results/emodb_pretrained/five_folds
sweep() {
    local name=$1
    shift
    cross_validate whisper.yaml --name "$name" --jobs "$jobs" \
        --folds 1 2 3 4 5 --seeds 1 --output_root "$root" \
        --delete_checkpoints -- --audio_hub="$pretrained/whisper-tiny.en" \
        --text_hub="$pretrained/all-MiniLM-L6-v2" "$@"
}
sweep turbo_paper --turbo_weight=1.0 --turbo_reduction=sum \
    --turbo_symmetric=cross_modal --label_aware=False \
    --mask_repeated_transcripts=False
sweep in_modal_only --cross_modal_weight=0
sweep cross_modal_only --in_modal_weight=0
sweep text_only '--modalities=[text]' --turbo_weight=0 --twin_pass=False
python -m speechbrain_turbo.cross_validate "$root" --paired_with baseline \
    --paired_metrics UA macro_F1
