#!/usr/bin/env bash
# Pretrained encoders on EmoDB (hparams/whisper.yaml: Whisper tiny.en's
# encoder and all-MiniLM-L6-v2, fine-tuned): audio alone, the cross-entropy
# baseline, Turbo, and Turbo with late fusion, on fold 4 with seeds 1, 2, 3
# and on every fold with seed 1 (fold 4's seed-1 run serves both), one CPU
# thread per run; then results/emodb_pretrained/{fold4,five_folds}/summary.md.
# Run from recipes/EmoDB/turbo, after python bench/pretrained_folders.py:
#   bash experiments/pretrained.sh /path/to/EmoDB [PRETRAINED_FOLDER] [JOBS]
set -euo pipefail
data=${1:?usage: pretrained.sh /path/to/EmoDB [PRETRAINED_FOLDER] [JOBS]}
pretrained=$(realpath "${2:-$HOME/.cache/speechbrain_turbo/pretrained}")
jobs=${3:-1}
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
root=results/emodb_pretrained
sweep() {
    local name=$1
    shift
    local hubs=(--audio_hub="$pretrained/whisper-tiny.en"
        --text_hub="$pretrained/all-MiniLM-L6-v2")
    cross_validate whisper.yaml --name "$name" --jobs "$jobs" \
        --delete_checkpoints --folds 4 --seeds 1 2 3 \
        --output_root "$root/fold4" -- "${hubs[@]}" "$@"
    mkdir -p "$root/five_folds/$name"
    ln -sfn "$(realpath "$root/fold4/$name/fold4_seed1")" \
        "$root/five_folds/$name/fold4_seed1"
    cross_validate whisper.yaml --name "$name" --jobs "$jobs" \
        --delete_checkpoints --folds 1 2 3 4 5 --seeds 1 \
        --output_root "$root/five_folds" -- "${hubs[@]}" "$@"
}
sweep audio_only '--modalities=[audio]' --turbo_weight=0 --twin_pass=False
sweep baseline --turbo_weight=0 --twin_pass=False
sweep turbo
sweep turbo_late --fusion_interactions=False
for table in fold4 five_folds; do
    python -m speechbrain_turbo.cross_validate "$root/$table" \
        --paired_with baseline
done
