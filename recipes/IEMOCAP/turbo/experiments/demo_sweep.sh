#!/usr/bin/env bash
# The demo-corpus experiments behind the README's results table: the
# cross-entropy baseline, Turbo over a small grid of settings, ablations,
# and the single-modality baselines, each over 3 seeds on test session 5
# (validation: session 1). Turbo's settings are chosen on the validation UA
# column only. Two configurations run at a time, one CPU thread each
# (about two hours on 2 cores). Finished runs are skipped on a re-run.
#
# Usage (from recipes/IEMOCAP/turbo): bash experiments/demo_sweep.sh [EXTRA...]
set -euo pipefail
root=results/demo_sweep
run() {
    local name=$1
    shift
    python cross_validate.py hparams/demo.yaml --name "$name" --folds 5 \
        --seeds 1 2 3 --output_root "$root" -- "$@"
}

# Synthesise the shared corpus once, before the parallel runs.
python -m speechbrain_turbo.demo --output results/demo/corpus

# The baseline, the defaults and the single-modality models come first.
{
    run baseline --turbo_weight=0 --twin_pass=False "$@"
    run audio_only --turbo_weight=0 --twin_pass=False '--modalities=[audio]' "$@"
    run turbo_w0.1 --turbo_weight=0.1 --label_aware=False "$@"
    run turbo_w0.3 --turbo_weight=0.3 --label_aware=False "$@"
    run turbo_w0.3_label_aware --turbo_weight=0.3 --label_aware=True "$@"
    run turbo_w0.1_t0.05 --turbo_weight=0.1 --temperature=0.05 \
        --label_aware=False "$@"
} &
{
    # hparams/demo.yaml's defaults: turbo_weight 0.1, temperature 0.1,
    # label_aware True, repeated transcripts masked.
    run turbo_w0.1_label_aware --turbo_weight=0.1 --label_aware=True "$@"
    run text_only --turbo_weight=0 --twin_pass=False '--modalities=[text]' "$@"
    run twin_pass_only --turbo_weight=0 --twin_pass=True "$@"
    run turbo_w1.0 --turbo_weight=1.0 --label_aware=False "$@"
    run turbo_w1.0_no_transcript_mask --turbo_weight=1.0 --label_aware=False \
        --mask_repeated_transcripts=False "$@"
    run turbo_w0.1_in_modal_only --turbo_weight=0.1 --cross_modal_weight=0 \
        --label_aware=False "$@"
} &
wait
python experiments/collect.py "$root"
