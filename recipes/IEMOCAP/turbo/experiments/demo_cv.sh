#!/usr/bin/env bash
# Five-fold leave-one-session-out on the demo corpus, 3 seeds per fold, for
# the cross-entropy baseline and Turbo with the settings chosen on validation
# in demo_sweep.sh (the defaults of hparams/demo.yaml). Runs already in
# results/demo_cv are reused. Two runs at a time, one thread each.
#
# Usage (from recipes/IEMOCAP/turbo): bash experiments/demo_cv.sh
set -euo pipefail
root=results/demo_cv
cv() {
    python cross_validate.py hparams/demo.yaml --seeds 1 2 3 \
        --output_root "$root" "$@"
}

python -m speechbrain_turbo.demo_corpus --output results/demo/corpus
{
    cv --name baseline --folds 1 2 3 4 5 -- --turbo_weight=0 --twin_pass=False
    cv --name turbo --folds 1 -- --turbo_weight=0.1 --label_aware=True
} &
cv --name turbo --folds 2 3 4 -- --turbo_weight=0.1 --label_aware=True &
wait
# The complete tables, once every run has finished.
cv --name baseline --folds 1 2 3 4 5 -- --turbo_weight=0 --twin_pass=False
cv --name turbo --folds 1 2 3 4 5 -- --turbo_weight=0.1 --label_aware=True
python experiments/collect.py "$root"
