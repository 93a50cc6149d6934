#!/usr/bin/env python3
"""What running a text encoder's frozen layers once, for both Turbo views,
would save on a training step of the base-size recipe.

Whisper's frozen layers run once per batch and their output is shared by
the two views (``HFWhisperEncoder.run_once``); a text encoder's frozen
layers (``HFTextEncoder(frozen_layers=N)``) have no dropout and no graph,
but run once per view, inside the one forward over the doubled batch. This
script times, over the same steps, alternating, after a warm-up:

- ``text_step``: the text branch's twin-pass forward and backward as the
  recipe runs it (:class:`speechbrain_turbo.models.ModalityEncoder` with two
  views, the first N layers frozen);
- ``frozen_once``: the embeddings and the N frozen layers alone on the
  batch's B rows, without graph: what sharing them would save per step
  (they now run on 2B rows);
- ``audio_step``: the audio branch's twin-pass step (Whisper through a
  learned sum of its layers, as ``whisper.yaml`` runs it, the first
  ``--audio_frozen_layers`` frozen and shared), for scale.

The saving is ``frozen_once`` over ``text_step + audio_step`` (medians).
The views do not change either way: the frozen layers run without dropout.

    > python bench/text_frozen_layers.py \
        --text ~/.cache/speechbrain_turbo/pretrained/all-mpnet-base-v2 \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-base \
        --output bench/measurements/text_frozen_layers

Authors
 * speechbrain-turbo contributors
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
from transformers import AutoModel

from speechbrain_turbo.hf_encoders import HFTextEncoder, HFWhisperEncoder
from speechbrain_turbo.models import ModalityEncoder


def twin_step_seconds(branch, inputs, lengths):
    """One twin-pass forward and backward of a branch.

    Arguments
    ---------
    branch : ModalityEncoder
        In training mode.
    inputs : torch.Tensor
        The batch.
    lengths : torch.Tensor
        Relative lengths.

    Returns
    -------
    float
        Seconds.
    """
    start = time.perf_counter()
    branch(inputs, lengths, num_views=2).sum().backward()
    return time.perf_counter() - start


def main(argv=None):
    """Times the three parts and writes ``results.json`` and ``results.md``.

    Arguments
    ---------
    argv : list of str, optional
        The command line (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", required=True, help="text model folder")
    parser.add_argument("--whisper", required=True, help="Whisper folder")
    parser.add_argument("--output", required=True)
    parser.add_argument("--text_frozen_layers", type=int, default=6)
    parser.add_argument("--audio_frozen_layers", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.8)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    scratch = tempfile.mkdtemp()
    text = ModalityEncoder(
        HFTextEncoder(
            args.text,
            scratch,
            config_overrides={
                "hidden_dropout_prob": 0.1,
                "attention_probs_dropout_prob": 0.1,
            },
            frozen_layers=args.text_frozen_layers,
        )
    ).train()
    audio = ModalityEncoder(
        HFWhisperEncoder(
            args.whisper,
            scratch,
            config_overrides={
                "dropout": 0.0,
                "activation_dropout": 0.1,
                "attention_dropout": 0.1,
            },
            freeze_feature_extractor=True,
            layer_weighted_sum=True,
            frozen_layers=args.audio_frozen_layers,
        )
    ).train()
    # The same weights, cut after the frozen layers.
    lower = AutoModel.from_pretrained(
        args.text, num_hidden_layers=args.text_frozen_layers
    ).eval()

    # Any ids past the special tokens: the cost does not depend on them.
    vocab_size = lower.config.vocab_size
    ids = torch.randint(5, vocab_size, (args.batch_size, args.tokens))
    lengths = torch.ones(args.batch_size)
    wavs = 0.05 * torch.randn(args.batch_size, int(args.seconds * 16000))

    def frozen_once():
        """Seconds of the embeddings and the frozen layers on B rows."""
        start = time.perf_counter()
        with torch.no_grad():
            lower(input_ids=ids, attention_mask=torch.ones_like(ids))
        return time.perf_counter() - start

    times = {"text_step": [], "frozen_once": [], "audio_step": []}
    for step in range(args.steps + 1):  # the first is a warm-up
        measured = {
            "text_step": twin_step_seconds(text, ids, lengths),
            "frozen_once": frozen_once(),
            "audio_step": twin_step_seconds(audio, wavs, lengths),
        }
        if step:
            for name, seconds in measured.items():
                times[name].append(seconds)
    medians = {name: statistics.median(v) for name, v in times.items()}
    saving = medians["frozen_once"] / (
        medians["text_step"] + medians["audio_step"]
    )
    results = {
        **{k: v for k, v in vars(args).items() if k != "output"},
        "threads": torch.get_num_threads(),
        "step_seconds": times,
        "median_step_seconds": medians,
        "saving_fraction_of_step": saving,
    }
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "results.json"), "w") as out:
        json.dump(results, out, indent=2)
    report = (
        f"Batch {args.batch_size}, {args.tokens} tokens, "
        f"{args.seconds} s clips, {torch.get_num_threads()} threads; "
        f"median seconds over {args.steps} steps:\n\n"
        "| part | seconds |\n|---|---|\n"
        + "".join(f"| {k} | {v:.3f} |\n" for k, v in medians.items())
        + f"\nSharing the text encoder's frozen layers would save "
        f"{100 * saving:.1f} % of the encoders' step.\n"
    )
    with open(os.path.join(args.output, "results.md"), "w") as out:
        out.write(report)
    print(report)


if __name__ == "__main__":
    main()
