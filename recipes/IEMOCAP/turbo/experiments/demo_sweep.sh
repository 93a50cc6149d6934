#!/usr/bin/env bash
# The demo-corpus experiments behind the README's results table: the
# cross-entropy baseline, the twin pass alone, Turbo over a small grid of
# settings, and the single-modality baselines, each over 3 seeds on test
# session 5 (validation: session 1). Turbo's settings are chosen on the
# validation UA column only.
#
# Usage (from recipes/IEMOCAP/turbo): bash experiments/demo_sweep.sh [JOBS] [EXTRA...]
# e.g. bash experiments/demo_sweep.sh 12 --device=cuda:0
set -euo pipefail
jobs=${1:-2}
shift || true
extra=("$@")
root=results/demo_sweep
run() {
    local name=$1
    shift
    python cross_validate.py hparams/demo.yaml --name "$name" --folds 5 \
        --seeds 1 2 3 --jobs "$jobs" --output_root "$root" -- "${extra[@]}" "$@"
}

# Synthesise the shared corpus once before the parallel runs.
python -m speechbrain_turbo.demo_corpus --output results/demo/corpus

# Every configuration at once: each runs its 3 seeds with up to JOBS in
# parallel (the device has the cores; locally use JOBS=1 and be patient).
run baseline --turbo_weight=0 --twin_pass=False &
run twin_pass_only --turbo_weight=0 --twin_pass=True &
run audio_only --turbo_weight=0 --twin_pass=False --modalities=[audio] &
run text_only --turbo_weight=0 --twin_pass=False --modalities=[text] &
for weight in 0.1 0.3 1.0; do
    for temperature in 0.05 0.1; do
        run "turbo_w${weight}_t${temperature}" --turbo_weight="$weight" \
            --temperature="$temperature" &
    done
done
for weight in 0.3 1.0; do
    run "turbo_w${weight}_t0.1_label_aware" --turbo_weight="$weight" \
        --temperature=0.1 --label_aware=True &
    run "turbo_w${weight}_t0.1_no_transcript_mask" --turbo_weight="$weight" \
        --temperature=0.1 --mask_repeated_transcripts=False &
done
wait
python experiments/collect.py "$root"
