# shellcheck shell=bash
# Sourced by the experiments (with data=/path/to/EmoDB set): writes EmoDB's
# five folds once (results/EmoDB_folds, or FOLDS_FOLDER) and defines
#   cross_validate HPARAMS ARGS... [-- OVERRIDES...]
# which runs the generic recipe (recipes/AudioText/turbo) over them, with
# EmoDB's values for HPARAMS (small.yaml or whisper.yaml) before OVERRIDES.
: "${data:?set data=/path/to/EmoDB before sourcing experiments/common.sh}"
corpus_dir=$(realpath "$(dirname "${BASH_SOURCE[0]}")/..")
generic_recipe=$(realpath "$corpus_dir/../../AudioText/turbo")
prepared_folds=${FOLDS_FOLDER:-$corpus_dir/results/EmoDB_folds}
python "$corpus_dir/emodb_prepare.py" "$data" "$prepared_folds"
cross_validate() {
    local hparams=$1
    shift
    local values
    values="--data_folder=$(printf %q "$(realpath "$data")")"
    case $hparams in
    whisper.yaml)
        # On a CPU: no loader processes, fixed-size batches of 16.
        values+=" --num_workers=0 --dynamic_batching=False"
        ;;
    esac
    python "$generic_recipe/cross_validate.py" \
        "$generic_recipe/hparams/$hparams" --manifests "$prepared_folds" \
        --corpus_overrides="$values" "$@"
}
