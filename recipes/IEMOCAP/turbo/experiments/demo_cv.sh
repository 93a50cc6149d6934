#!/usr/bin/env bash
# Five-fold leave-one-session-out on the demo corpus, 3 seeds per fold, for
# the cross-entropy baseline, Turbo with the settings chosen on validation in
# demo_sweep.sh (the defaults of hparams/demo.yaml), and Turbo trained with
# modality dropout 0.3. Every run is also tested without transcripts. Runs
# already in results/demo_cv are reused. Two runs at a time, one thread each.
#
# Usage (from recipes/IEMOCAP/turbo): bash experiments/demo_cv.sh
set -euo pipefail
root=results/demo_cv
cv() {
    python cross_validate.py hparams/demo.yaml --folds 1 2 3 4 5 \
        --seeds 1 2 3 --jobs 2 --output_root "$root" "$@"
}

python -m speechbrain_turbo.demo --output results/demo/corpus
cv --name baseline -- --turbo_weight=0 --twin_pass=False
cv --name turbo -- --turbo_weight=0.1 --label_aware=True
cv --name turbo_modality_dropout -- --turbo_weight=0.1 --label_aware=True \
    --modality_dropout=0.3
python experiments/collect.py "$root"
