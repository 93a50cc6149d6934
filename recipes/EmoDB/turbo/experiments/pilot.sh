#!/usr/bin/env bash
# Choosing hparams/pretrained.yaml's configuration on validation only: each
# candidate trains on every fold once (seed 1), and the candidates are
# ranked by their mean validation UA over the five folds (the test scores
# are written too, but not read to choose). Stage "finetune": how to
# fine-tune (cross-entropy); stage "turbo": the Turbo variants, on the
# fine-tuning configuration that stage chose (give its overrides as
# FINETUNE). Re-running skips finished runs. One CPU thread per run.
# Run from recipes/EmoDB/turbo, after python bench/pretrained_folders.py:
#   bash experiments/pilot.sh STAGE /path/to/EmoDB [PRETRAINED_FOLDER] [JOBS]
set -euo pipefail
stage=${1:?usage: pilot.sh finetune|turbo /path/to/EmoDB [PRETRAINED] [JOBS]}
data=${2:?usage: pilot.sh finetune|turbo /path/to/EmoDB [PRETRAINED] [JOBS]}
pretrained=${3:-$HOME/.cache/speechbrain_turbo/pretrained}
jobs=${4:-2}
root=results/emodb_pilot/$stage
read -r -a finetune <<<"${FINETUNE:-}"
sweep() {
    local name=$1
    shift
    python cross_validate.py hparams/pretrained.yaml --name "$name" \
        --jobs "$jobs" --folds 1 2 3 4 5 --seeds 1 --output_root "$root" \
        --delete_checkpoints -- --data_folder="$data" \
        --audio_hub="$pretrained/whisper-tiny.en" \
        --text_hub="$pretrained/all-MiniLM-L6-v2" "$@"
}
ce=(--turbo_weight=0 --twin_pass=False)
case $stage in
finetune)
    sweep last_layer "${ce[@]}"
    sweep layer_sum4 "${ce[@]}" --audio_layer_weighted_sum=True \
        --audio_num_layers=4
    sweep layer_sum4_lr1e-4 "${ce[@]}" --audio_layer_weighted_sum=True \
        --audio_num_layers=4 --encoder_lr=0.0001 --encoder_lr_final=0.00001
    ;;
turbo)
    sweep two_views_ce "${finetune[@]}" --turbo_weight=0 --twin_pass=True
    sweep turbo_t0.1_w0.1 "${finetune[@]}"
    sweep turbo_t0.05_w1 "${finetune[@]}" --temperature=0.05 \
        --turbo_weight=1.0
    sweep turbo_supcon_w0.1 "${finetune[@]}" --label_positives=True
    sweep rdrop_w1 "${finetune[@]}" --turbo_weight=0 --twin_pass=True \
        --consistency_weight=1.0
    ;;
*)
    echo "unknown stage $stage (finetune or turbo)" >&2
    exit 2
    ;;
esac
python -m speechbrain_turbo.cross_validate "$root" --paired_metrics UA \
    macro_F1
