#!/usr/bin/env python3
"""Recipe for speech emotion recognition on EmoDB (audio + text) with Turbo.

EmoDB: 10 German actors, 10 sentences, 7 emotions, 535 utterances. The
transcript is the sentence read (the same 10 in every emotion, so it
carries almost no label information). Speaker-independent folds of one
male and one female actor: ``--test_fold`` (1-5) for test, the next fold
for validation, the other three for training (see emodb_prepare.py).

    > python train.py hparams/small.yaml --data_folder=/path/to/EmoDB

The cross-entropy baseline on the same code path (its own output folder):
    > python train.py hparams/small.yaml --data_folder=... \
        --turbo_weight=0 --twin_pass=False --experiment_name=baseline

Authors
 * speechbrain-turbo contributors
"""

import sys

import speechbrain as sb
from emodb_prepare import prepare_emodb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from speechbrain_turbo.errors import reported_input_errors
from speechbrain_turbo.recipe import start_experiment, train_and_test

if __name__ == "__main__":
    with reported_input_errors():
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        sb.utils.distributed.ddp_init_group(run_opts)
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
        start_experiment(hparams, hparams_file, overrides)
        run_on_main(
            prepare_emodb,
            kwargs={
                "data_folder": hparams["data_folder"],
                "save_folder": hparams["output_folder"],
                "test_fold": hparams["test_fold"],
                "valid_fold": hparams["valid_fold"],
                "skip_prep": hparams["skip_prep"],
            },
        )
        # Screening, tokenizer, training, test (speechbrain_turbo.recipe).
        train_and_test(
            hparams,
            run_opts,
            {
                "train": hparams["train_csv"],
                "valid": hparams["valid_csv"],
                "test": hparams["test_csv"],
            },
            label_key="label",
        )
