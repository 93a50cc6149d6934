#!/usr/bin/env python3
"""Recipe for any audio + text classification task with Turbo.

The data comes as three CSV manifests with the columns ``ID,wav,text,label``
(optional: ``duration``, ``speaker``); ``$data_root`` in ``wav`` is replaced
by ``--data_folder``. The label set is the training manifest's. Same Brain
and models as the IEMOCAP recipe (speechbrain_turbo.brain.TurboBrain).

Small encoders trained from scratch:
    > python train.py hparams/small.yaml \
        --train_csv=train.csv --valid_csv=valid.csv --test_csv=test.csv

Pretrained encoders (WavLM Base+ and RoBERTa-base by default):
    > python train.py hparams/pretrained.yaml \
        --train_csv=train.csv --valid_csv=valid.csv --test_csv=test.csv

The cross-entropy baseline: add --turbo_weight=0 --twin_pass=False
--experiment_name=baseline.

Authors
 * speechbrain-turbo contributors
"""

import sys

import speechbrain as sb

from speechbrain_turbo.errors import reported_input_errors
from speechbrain_turbo.recipe import (
    load_hparams,
    start_experiment,
    train_and_test,
)

if __name__ == "__main__":
    with reported_input_errors():
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        sb.utils.distributed.ddp_init_group(run_opts)
        hparams = load_hparams(hparams_file, overrides)
        start_experiment(hparams, hparams_file, overrides)
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
