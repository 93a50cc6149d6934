#!/usr/bin/env bash
# Does Turbo help? The pilot and the powered comparison of docs/results.md
# ("Does Turbo help?"), for a corpus whose experiments/common.sh prepares
# its folds and runs the generic recipe's hparams/whisper.yaml over them
# (recipes/EmoDB/turbo, recipes/MUStARD/turbo). Stages:
#   finetune  how to fine-tune (cross-entropy), every fold once (seed 1)
#             (ENCODERS=base: how many of Whisper base's layers to keep)
#   turbo     Turbo's variants on the fine-tuning chosen (FINETUNE), every
#             fold once (seed 1)
#   arms      the four arms (baseline, two views with cross-entropy only,
#             Turbo = FINETUNE + TURBO, the paper's objective), every fold
#             x seeds 1-5, then the paired analysis (METRIC: UA or macro_F1)
#   cross_modal_only  Turbo without its in-modal terms, every fold (seed
#             1), beside the arms; prints, per fold, the epoch each of the
#             two selects and its validation UA (whether the in-modal
#             terms change training)
#   keep      copies the small files of every finished run of every stage
#             to bench/measurements now (the other stages do it at their end)
# The pilot stages are ranked on mean validation UA (results/.../summary.md);
# their test scores are written, not read to choose. Re-running skips
# finished runs: those under ROOT (default RECIPE/results/turbo_comparison;
# point it outside the checkout to keep runs across clones) and those whose
# small files are in bench/measurements. One CPU thread per run, JOBS runs
# at a time per configuration; CONCURRENT=1 runs a stage's configurations
# side by side, each seed by seed, fold by fold. From the repository root,
# after
# python bench/pretrained_folders.py:
#   FINETUNE="--audio_layer_weighted_sum=True ..." TURBO="..." \
#     PROBE=bench/measurements/whisper_tiny_emodb/whisper_probe.json \
#     bash bench/turbo_comparison.sh recipes/EmoDB/turbo arms /path/to/EmoDB
set -euo pipefail
usage="usage: turbo_comparison.sh RECIPE finetune|turbo|arms|cross_modal_only|keep DATA [PRETRAINED] [JOBS]"
recipe=${1:?$usage}
stage=${2:?$usage}
# shellcheck disable=SC2034  # read by the corpus' experiments/common.sh
data=${3:?$usage}
pretrained=${4:-$HOME/.cache/speechbrain_turbo/pretrained}
jobs=${5:-2}
corpus=$(basename "$(dirname "$(realpath "$recipe")")")
# Optional: bench/whisper_probe.py's report, for "baseline - frozen probe".
probe=()
[[ -n ${PROBE:-} ]] && probe=(--probe "$(realpath "$PROBE")")
# ENCODERS=base: Whisper base and all-mpnet-base-v2 (its first 6 layers
# frozen) instead of Whisper tiny.en and all-MiniLM-L6-v2; the stages' runs
# and files then go to STAGE-base.
case ${ENCODERS:-tiny} in
tiny)
    hubs=(--audio_hub="$pretrained/whisper-tiny.en"
        --text_hub="$pretrained/all-MiniLM-L6-v2")
    suffix=""
    ;;
base)
    hubs=(--audio_hub="$pretrained/whisper-base"
        --text_hub="$pretrained/all-mpnet-base-v2" --text_frozen_layers=6)
    suffix=-base
    ;;
*)
    echo "ENCODERS must be tiny or base" >&2
    exit 2
    ;;
esac
where=$stage
[[ $stage == cross_modal_only ]] && where=arms
terms=$(dirname "$(realpath "$0")")/turbo_terms.py
kept=$(pwd)/bench/measurements/turbo_comparison/$corpus/$where$suffix
runs=${ROOT:+$(realpath -m "$ROOT")}
cd "$recipe"
runs=${runs:-$(realpath -m results/turbo_comparison)}
# The corpus' folds, and cross_validate with its values (uses $data).
# shellcheck source=/dev/null
source experiments/common.sh
root=$runs/$where$suffix
# The small files of every finished run (history, test metrics, predictions
# per utterance, run record) and the tables, for bench/measurements.
keep_small_files() {
    mkdir -p "$2"
    (cd "$1" && find . -maxdepth 2 -type f \( -name 'results.*' \
        -o -name 'summary.md' -o -name 'terms.md' -o -name 'comparison_*' \) \
        -exec cp --parents {} "$2" \; &&
        find . -name test_metrics.json -printf '%h\n' | while read -r run; do
            find "$run" -maxdepth 1 \( -name history.jsonl \
                -o -name 'test_metrics*.json' -o -name 'test_predictions*.csv' \
                -o -name run_record.json -o -name train_log.txt \
                -o -name cpu_seconds.txt \) \
                -exec cp --parents {} "$2" \;
        done)
}
if [[ $stage == keep ]]; then
    for done_stage in "$runs"/*/; do
        keep_small_files "$done_stage" "$(dirname "$kept")/$(basename "$done_stage")"
    done
    exit 0
fi
# Runs finished earlier and kept in bench/measurements are not run again,
# even where ROOT was lost (a run is finished when it has test_metrics.json).
if [[ -d $kept ]]; then
    mkdir -p "$root"
    cp -rn "$kept/." "$root/"
fi
read -r -a finetune <<<"${FINETUNE:-}"
read -r -a turbo <<<"${TURBO:-}"
# SEEDS="1 2": other seeds (default: 1-5 for the arms, 1 for the rest).
default_seeds=1
[[ $stage == arms ]] && default_seeds="1 2 3 4 5"
read -r -a seeds <<<"${SEEDS:-$default_seeds}"
# FOLDS="2 3": just these folds.
read -r -a folds <<<"${FOLDS:-1 2 3 4 5}"
sweep() {
    local name=$1
    shift
    # ONLY="name ...": run just these configurations of the stage.
    [[ -z ${ONLY:-} || " $ONLY " == *" $name "* ]] || return 0
    local command=(
        cross_validate whisper.yaml --name "$name"
        --jobs "$jobs" --folds "${folds[@]}" --seeds "${seeds[@]}"
        --output_root "$root" --delete_checkpoints -- "${hubs[@]}" "$@"
    )
    if [[ ${CONCURRENT:-0} == 1 ]]; then
        "${command[@]}" &
    else
        "${command[@]}"
    fi
}
ce=(--turbo_weight=0 --twin_pass=False)
case $stage in
finetune)
    if [[ $suffix == -base ]]; then
        # Whisper base: its first 3 of 6 layers (the frozen probe's best
        # layers are 2 and 3), or all 6 with the first 3 frozen.
        sweep layers3 "${ce[@]}" --audio_layer_weighted_sum=True \
            --audio_num_layers=3
        sweep layers6_frozen3 "${ce[@]}" --audio_layer_weighted_sum=True \
            --audio_num_layers=6 --audio_frozen_layers=3
    else
        sweep last_layer "${ce[@]}" --audio_layer_weighted_sum=False \
            --audio_num_layers=2
        sweep layer_sum4 "${ce[@]}" --audio_layer_weighted_sum=True \
            --audio_num_layers=4
        sweep layer_sum4_lr1e-4 "${ce[@]}" --audio_layer_weighted_sum=True \
            --audio_num_layers=4 --encoder_lr=0.0001 \
            --encoder_lr_final=0.00001
    fi
    ;;
turbo)
    sweep turbo_t0.1_w0.1 "${finetune[@]}"
    sweep turbo_t0.05_w1 "${finetune[@]}" --temperature=0.05 \
        --turbo_weight=1.0
    sweep turbo_supcon_w1 "${finetune[@]}" --label_positives=True \
        --turbo_weight=1.0
    sweep rdrop_w1 "${finetune[@]}" --turbo_weight=0 --twin_pass=True \
        --consistency_weight=1.0
    ;;
arms)
    sweep baseline "${finetune[@]}" "${ce[@]}"
    sweep two_views_ce "${finetune[@]}" --turbo_weight=0 --twin_pass=True
    sweep turbo "${finetune[@]}" "${turbo[@]}"
    sweep paper "${finetune[@]}" --turbo_weight=1.0 --turbo_reduction=sum \
        --turbo_symmetric=cross_modal --label_aware=False \
        --mask_repeated_transcripts=False
    ;;
cross_modal_only)
    sweep turbo_cross_modal_only "${finetune[@]}" "${turbo[@]}" \
        --in_modal_weight=0
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
wait
python -m speechbrain_turbo.cross_validate "$root"
python "$terms" "$root" >"$root/terms.md"
if [[ $stage == arms ]]; then
    # The plan's family of comparisons, Holm-adjusted together: each arm
    # against the baseline, and Turbo against two views with cross-entropy
    # only; those of arms that ran (ONLY may have left some out).
    pairs=()
    for pair in two_views_ce:baseline turbo:baseline paper:baseline \
        turbo:two_views_ce; do
        [[ -f $root/${pair%%:*}/results.csv &&
            -f $root/${pair##*:}/results.csv ]] && pairs+=("$pair")
    done
    if ((${#pairs[@]})); then
        python -m speechbrain_turbo.comparison "$root" --pairs "${pairs[@]}" \
            --metric "${METRIC:-UA}" "${probe[@]}"
    fi
fi
keep_small_files "$root" "$kept"
if [[ $stage == cross_modal_only ]]; then
    python - "$root" <<'PYTHON'
import json
import os
import sys

root = sys.argv[1]
print("fold  Turbo: epoch, valid UA  cross-modal only: epoch, valid UA")
for fold in range(1, 6):
    row = [f"{fold:4d}"]
    for name in ("turbo", "turbo_cross_modal_only"):
        path = f"{root}/{name}/fold{fold}_seed1/test_metrics.json"
        if not os.path.exists(path):
            row.append("not run yet")
            continue
        with open(path) as f:
            metrics = json.load(f)
        valid = metrics["selected_on_valid"]["UA"]
        row.append(f"{metrics['epoch']:2d}, {100 * valid:.2f}")
    print("  ".join(row))
PYTHON
fi
