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
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from speechbrain_turbo.brain import TurboBrain
from speechbrain_turbo.dataio import datasets_from_hparams
from speechbrain_turbo.experiment import check_run_identity, write_run_record


def dataio_prep(hparams):
    """Screens the manifests for bad inputs (the training labels are the
    class set), then builds the datasets, tokenising with the pretrained
    text model's own tokenizer or with SentencePiece trained on the screened
    training transcripts.
    """
    manifests = {
        "train": hparams["train_csv"],
        "valid": hparams["valid_csv"],
        "test": hparams["test_csv"],
    }
    return datasets_from_hparams(hparams, manifests, label_key="label")


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)

    # Never resume another configuration's checkpoints from this folder.
    run_on_main(
        check_run_identity,
        args=[hparams["output_folder"], hparams_file, overrides],
    )
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    # Packages, code revision and manifest checksums, for reproduction.
    run_on_main(
        write_run_record,
        args=[
            hparams["output_folder"],
            {
                split: hparams[f"{split}_csv"]
                for split in ("train", "valid", "test")
            },
        ],
    )
    datasets = dataio_prep(hparams)
    hparams["label_encoder"].expect_len(hparams["out_n_neurons"])

    brain = TurboBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["dataloader_options"],
        valid_loader_kwargs=hparams["test_dataloader_options"],
    )
    brain.evaluate(
        datasets["test"],
        max_key="UA",
        test_loader_kwargs=hparams["test_dataloader_options"],
    )
    # How the model copes without a modality (e.g. no transcript).
    for missing in hparams["test_without"]:
        if missing in hparams["modalities"] and len(hparams["modalities"]) > 1:
            brain.evaluate_without(
                [missing],
                datasets["test"],
                max_key="UA",
                test_loader_kwargs=hparams["test_dataloader_options"],
            )
    brain.leave_process_group()
