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
from iemocap_prepare import prepare_iemocap
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.errors import reported_input_errors
from speechbrain_turbo.recipe import (
    load_hparams,
    start_experiment,
    train_and_test,
)

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


if __name__ == "__main__":
    with reported_input_errors():
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        sb.utils.distributed.ddp_init_group(run_opts)
        hparams = load_hparams(hparams_file, overrides)

        start_experiment(hparams, hparams_file, overrides)

        run_on_main(ensure_demo_corpus, args=[hparams])
        run_on_main(
            prepare_iemocap,
            kwargs={
                "data_folder": hparams["data_folder"],
                "save_folder": hparams["output_folder"],
                "test_session": hparams["test_session"],
                "valid_split": hparams["valid_split"],
                "seed": hparams["seed"],
                "skip_prep": hparams["skip_prep"],
            },
        )
        # Screening, tokenizer, training, test (speechbrain_turbo.recipe).
        train_and_test(
            hparams,
            run_opts,
            {
                "train": hparams["train_annotation"],
                "valid": hparams["valid_annotation"],
                "test": hparams["test_annotation"],
            },
            label_key="emo",
        )
