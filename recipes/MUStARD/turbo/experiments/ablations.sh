#!/usr/bin/env bash
# Turbo's question on MUStARD with pretrained encoders
# (hparams/whisper.yaml with MUStARD's values, experiments/common.sh:
# Whisper tiny.en's encoder and all-MiniLM-L6-v2, fine-tuned): text alone,
# audio alone, the cross-entropy baseline, Turbo (the recipe's default),
# Turbo with the paper's objective, and the in-modal-only and
# cross-modal-only ablations, on the five stratified folds for each seed
# given; then results/mustard_pretrained/summary.md, paired with the
# baseline (macro-F1 and UA). One CPU thread per run.
# Run from recipes/MUStARD/turbo, after python bench/pretrained_folders.py:
#   bash experiments/ablations.sh DATA_FOLDER [PRETRAINED_FOLDER] [JOBS] [SEEDS]
# (DATA_FOLDER holds the clones MUStARD/ and cmpt-419/; SEEDS e.g. "1 2").
# TASK=valence runs the same on MUStARD++'s valence classes (results in
# results/mustard_pretrained_valence).
set -euo pipefail
data=${1:?usage: ablations.sh DATA_FOLDER [PRETRAINED_FOLDER] [JOBS] [SEEDS]}
pretrained=$(realpath "${2:-$HOME/.cache/speechbrain_turbo/pretrained}")
jobs=${3:-1}
read -r -a seeds <<< "${4:-1}"
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
root=results/mustard_pretrained
[[ $task == sarcasm ]] || root+=_$task
sweep() {
    local name=$1
    shift
    cross_validate whisper.yaml --name "$name" --jobs "$jobs" \
        --folds 1 2 3 4 5 --seeds "${seeds[@]}" --delete_checkpoints \
        --output_root "$root" -- --audio_hub="$pretrained/whisper-tiny.en" \
        --text_hub="$pretrained/all-MiniLM-L6-v2" "$@"
}
sweep text_only '--modalities=[text]' --turbo_weight=0 --twin_pass=False
sweep audio_only '--modalities=[audio]' --turbo_weight=0 --twin_pass=False
sweep baseline --turbo_weight=0 --twin_pass=False
sweep turbo
sweep turbo_paper --turbo_weight=1.0 --turbo_reduction=sum \
    --turbo_symmetric=cross_modal --label_aware=False \
    --mask_repeated_transcripts=False
sweep in_modal_only --cross_modal_weight=0
sweep cross_modal_only --in_modal_weight=0
python -m speechbrain_turbo.cross_validate "$root" --paired_with baseline \
    --paired_metrics macro_F1 UA
