#!/usr/bin/env python3
"""The cost of a Turbo training step through Whisper's encoder, on the
batch's own length against 30-s windows.

A batch of EmoDB-length clips (random speech-level noise: the cost does
not depend on the content) goes through the audio branch of
``recipes/EmoDB/turbo/hparams/pretrained.yaml`` as the twin pass sends it:
:class:`speechbrain_turbo.models.ModalityEncoder` over
:class:`speechbrain_turbo.hf_encoders.HFWhisperEncoder` with two views,
forward and backward. Each encoding (own length, 30 s) is timed over the
same steps, alternating, after a warm-up; medians are reported with the
difference between the two views (dropout on) and the cosine agreement of
the pooled outputs of the two encodings (dropout off).

    > python bench/whisper_step.py \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-tiny.en \
        --output results/whisper_step

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

from speechbrain_turbo.hf_encoders import HFWhisperEncoder
from speechbrain_turbo.models import ModalityEncoder


def branch(whisper, num_layers, pad_to_30s):
    """The recipe's audio branch: Whisper's encoder with the recipe's
    dropouts, mean pooling.

    Arguments
    ---------
    whisper : str
        Whisper folder.
    num_layers : int or None
        Encoder layers kept.
    pad_to_30s : bool
        Encode 30-s windows.

    Returns
    -------
    ModalityEncoder
        In training mode.
    """
    torch.manual_seed(0)
    encoder = HFWhisperEncoder(
        whisper,
        tempfile.mkdtemp(),
        config_overrides={
            "dropout": 0.0,
            "activation_dropout": 0.1,
            "attention_dropout": 0.1,
        },
        freeze_feature_extractor=True,
        pad_to_30s=pad_to_30s,
        num_layers=num_layers,
    )
    return ModalityEncoder(encoder).train()


def step_seconds(model, wavs, lengths):
    """One twin-pass forward and backward.

    Arguments
    ---------
    model : ModalityEncoder
        The branch.
    wavs, lengths : torch.Tensor
        The batch.

    Returns
    -------
    seconds : float
        Wall time of the step.
    views : torch.Tensor
        ``[2B, D]`` pooled outputs of the two views.
    """
    model.zero_grad(set_to_none=True)
    begin = time.perf_counter()
    views = model(wavs, lengths, num_views=2)
    views.pow(2).mean().backward()
    return time.perf_counter() - begin, views.detach()


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--whisper", required=True, help="Whisper folder")
    parser.add_argument("--output", required=True)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)

    generator = torch.Generator().manual_seed(0)
    samples = int(args.seconds * 16000)
    wavs = 0.1 * torch.randn(args.batch_size, samples, generator=generator)
    lengths = torch.ones(args.batch_size)
    models = {
        "own_length": branch(args.whisper, args.num_layers, False),
        "30s": branch(args.whisper, args.num_layers, True),
    }
    times = {name: [] for name in models}
    for step in range(args.steps + 1):
        for name, model in models.items():
            seconds, views = step_seconds(model, wavs, lengths)
            if step > 0:  # the first is a warm-up
                times[name].append(seconds)
            first, second = views.chunk(2)
            # Dropout on: the two views must differ.
            assert not torch.allclose(first, second), name
    medians = {name: statistics.median(t) for name, t in times.items()}
    with torch.no_grad():
        pooled = {
            name: model.eval()(wavs, lengths) for name, model in models.items()
        }
    cosine = torch.nn.functional.cosine_similarity(
        pooled["own_length"], pooled["30s"], dim=-1
    )
    report = {
        "whisper": args.whisper,
        "num_layers": args.num_layers,
        "batch_size": args.batch_size,
        "clip_seconds": args.seconds,
        "threads": torch.get_num_threads(),
        "step_seconds": times,
        "median_step_seconds": medians,
        "speedup_own_length": medians["30s"] / medians["own_length"],
        "pooled_cosine_min": cosine.min().item(),
        "pooled_cosine_mean": cosine.mean().item(),
    }
    with open(os.path.join(args.output, "whisper_step.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
