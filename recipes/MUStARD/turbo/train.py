#!/usr/bin/env python3
"""Recipe for sarcasm detection on MUStARD (audio + text) with Turbo.

MUStARD: utterances from TV series, labelled sarcastic or not; here the
210 of them (105 sarcastic) whose audio is public. Unlike acted emotion
corpora, the words differ from one utterance to the next and carry much of
the label. Five folds (see mustard_prepare.py): ``--test_fold`` for test,
the next fold for validation, the rest for training; ``--split`` chooses
label-stratified (default), speaker-disjoint or show-out folds.

    > python train.py hparams/pretrained.yaml --data_folder=/path/to/folder

where the folder holds the two repositories ``MUStARD`` (labels and texts)
and ``cmpt-419`` (audio). The cross-entropy baseline on the same code path:
    > python train.py hparams/pretrained.yaml --data_folder=... \
        --turbo_weight=0 --twin_pass=False --experiment_name=baseline

Authors
 * speechbrain-turbo contributors
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from mustard_prepare import prepare_mustard
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
            prepare_mustard,
            kwargs={
                "sarcasm_json": hparams["sarcasm_json"],
                "audio_folder": hparams["audio_folder"],
                "save_folder": hparams["output_folder"],
                "converted_folder": hparams["converted_folder"],
                "split": hparams["split"],
                "test_fold": hparams["test_fold"],
                "valid_fold": hparams["valid_fold"],
                "context_lines": hparams["context_lines"],
                "sample_rate": hparams["sample_rate"],
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
