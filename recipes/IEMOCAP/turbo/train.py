#!/usr/bin/env python3
"""Recipe for audio + text emotion recognition on IEMOCAP with Turbo.

Turbo sends each batch through the network twice with different dropout
masks and adds in-modal (audio-audio, text-text) and cross-modal (audio-text)
contrastive terms to the cross-entropy. The library does the work
(speechbrain_turbo.brain.TurboBrain); this script wires data and hparams.

To run the demo (a synthetic IEMOCAP-layout corpus, made when absent):
    > python train.py hparams/demo.yaml

With pretrained encoders (WavLM Base+ and RoBERTa-base by default) on a
real copy of IEMOCAP, testing on session 1:
    > python train.py hparams/turbo.yaml \
        --data_folder=/path/to/IEMOCAP_full_release --test_session=1

The cross-entropy baseline, same code path (its own output folder):
    > python train.py hparams/turbo.yaml --data_folder=... \
        --turbo_weight=0 --twin_pass=False --experiment_name=baseline

Authors
 * speechbrain-turbo contributors
"""

import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from iemocap_prepare import prepare_iemocap
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.brain import TurboBrain
from speechbrain_turbo.dataio import datasets_from_hparams
from speechbrain_turbo.experiment import check_run_identity, write_run_record

logger = get_logger(__name__)


def ensure_demo_corpus(hparams):
    """Synthesises the demo corpus into ``data_folder`` when it holds none.

    A folder with a demo marker is handed back to the synthesiser (which
    reuses it or remakes it when its parameters changed); a folder with a
    real corpus (Session folders, no marker) is left alone.
    """
    data_folder = hparams["data_folder"]
    has_corpus = os.path.isdir(os.path.join(data_folder, "Session1"))
    is_demo = os.path.exists(os.path.join(data_folder, "demo_corpus.json"))
    if "demo_corpus" in hparams and (is_demo or not has_corpus):
        if not is_demo:
            logger.warning(
                "%s holds no IEMOCAP_full_release (no Session1): making the "
                "SYNTHETIC demo corpus there. For real IEMOCAP, point "
                "--data_folder at the folder holding Session1..Session5.",
                data_folder,
            )
        hparams["demo_corpus"](output=data_folder)


def dataio_prep(hparams):
    """Screens the manifests for bad inputs (the training labels are the
    class set), then builds the datasets, tokenising with the pretrained
    text model's own tokenizer or with SentencePiece trained on the screened
    training transcripts.
    """
    manifests = {
        "train": hparams["train_annotation"],
        "valid": hparams["valid_annotation"],
        "test": hparams["test_annotation"],
    }
    return datasets_from_hparams(hparams, manifests, label_key="emo")


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

    run_on_main(ensure_demo_corpus, args=[hparams])
    run_on_main(
        prepare_iemocap,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "test_session": hparams["test_session"],
            "valid_split": hparams["valid_split"],
            "seed": hparams["seed"],
        },
    )
    # Packages, code revision and manifest checksums, for reproduction.
    run_on_main(
        write_run_record,
        args=[
            hparams["output_folder"],
            {
                "train": hparams["train_annotation"],
                "valid": hparams["valid_annotation"],
                "test": hparams["test_annotation"],
            },
        ],
    )
    datasets = dataio_prep(hparams)
    num_classes = len(hparams["label_encoder"])
    if num_classes != hparams["out_n_neurons"]:
        raise ValueError(
            f"The training set has {num_classes} classes but out_n_neurons "
            f"is {hparams['out_n_neurons']}: set --out_n_neurons={num_classes}"
        )
    hparams["label_encoder"].expect_len(num_classes)

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
