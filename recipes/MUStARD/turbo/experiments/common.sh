# shellcheck shell=bash
# Sourced by the experiments (with data=/path/to/folder set, the folder
# holding the clones MUStARD/ and cmpt-419/, and MUStARD_Plus_Plus/ for
# TASK=valence): writes MUStARD's five stratified folds of the task (TASK:
# sarcasm, the default, or valence) once (results/MUStARD_folds,
# results/MUStARD_valence_folds, or FOLDS_FOLDER) and defines
#   cross_validate HPARAMS ARGS... [-- OVERRIDES...]
# which runs the generic recipe (recipes/AudioText/turbo) over them, with
# MUStARD's values for HPARAMS (small.yaml or whisper.yaml) before OVERRIDES.
: "${data:?set data=/path/to/folder (holding MUStARD/ and cmpt-419/) before sourcing experiments/common.sh}"
corpus_dir=$(realpath "$(dirname "${BASH_SOURCE[0]}")/..")
generic_recipe=$(realpath "$corpus_dir/../../AudioText/turbo")
task=${TASK:-sarcasm}
default_folds=$corpus_dir/results/MUStARD_folds
[[ $task == sarcasm ]] || default_folds=$corpus_dir/results/MUStARD_${task}_folds
prepared_folds=${FOLDS_FOLDER:-$default_folds}
python "$corpus_dir/mustard_prepare.py" "$data" "$prepared_folds" --task "$task"
cross_validate() {
    local hparams=$1
    shift
    local values=""
    case $hparams in
    small.yaml)
        values="--dynamic_batching=True --max_batch_length=32"
        ;;
    whisper.yaml)
        # Whisper tiny.en's first 2 layers; the training folds hold about
        # 126 utterances, the validation UA peaks within 3-4 epochs.
        values="--num_workers=0 --audio_num_layers=2"
        values+=" --audio_layer_weighted_sum=False --number_of_epochs=6"
        values+=" --max_batch_length=64"
        ;;
    esac
    python "$generic_recipe/cross_validate.py" \
        "$generic_recipe/hparams/$hparams" --manifests "$prepared_folds" \
        --corpus_overrides="$values" "$@"
}
