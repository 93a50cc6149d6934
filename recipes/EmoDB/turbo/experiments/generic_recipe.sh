#!/usr/bin/env bash
# The generic recipe a user runs on their own data
# (recipes/AudioText/turbo/hparams/small.yaml, defaults) on EmoDB given as
# CSV manifests: emodb_prepare.py writes each fold's train/valid/test.csv,
# AudioText's train.py trains and tests, one CPU thread per run, seed 1;
# then the mean and standard deviation over the five folds.
# Run from recipes/EmoDB/turbo:
#   bash experiments/generic_recipe.sh /path/to/EmoDB [JOBS]
set -euo pipefail
data=${1:?usage: generic_recipe.sh /path/to/EmoDB [JOBS]}
jobs=${2:-1}
root=$(realpath -m results/emodb_generic_recipe)
recipe=$(realpath ../../AudioText/turbo)
for fold in 1 2 3 4 5; do
    python -c "from emodb_prepare import prepare_emodb; \
prepare_emodb('$data', '$root/manifests/fold$fold', test_fold=$fold)"
done
run_fold() {
    local fold=$1 manifests=$root/manifests/fold$1 out=$root/fold$1_seed1
    [ -f "$out/test_metrics.json" ] && return 0
    (cd "$recipe" && OMP_NUM_THREADS=1 python train.py hparams/small.yaml \
        --train_csv="$manifests/train.csv" --valid_csv="$manifests/valid.csv" \
        --test_csv="$manifests/test.csv" --data_folder="$data" \
        --output_folder="$out" --seed=1 >"$out.log" 2>&1)
}
export -f run_fold
export root recipe data
printf '%s\n' 1 2 3 4 5 | xargs -P "$jobs" -I{} bash -c 'run_fold {}'
python - "$root" <<'PY'
import json, statistics, sys
root = sys.argv[1]
runs = [json.load(open(f"{root}/fold{f}_seed1/test_metrics.json")) for f in range(1, 6)]
lines = ["| metric | mean ± std over folds 1-5 | per fold |", "|---|---|---|"]
for key in ("UA", "WA", "macro_F1", "process_cpu_minutes"):
    values = [r[key] * (1 if key == "process_cpu_minutes" else 100) for r in runs]
    lines.append(
        f"| {key} | {statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} "
        f"| {', '.join(f'{v:.1f}' for v in values)} |"
    )
table = "\n".join(lines) + "\n"
open(f"{root}/summary.md", "w").write(table)
print(table)
PY
