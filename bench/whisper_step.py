#!/usr/bin/env python3
"""The cost of a Turbo training step through Whisper's encoder: on the
batch's own length against 30-s windows, or with its lower layers frozen
(run once for both views) against every layer trained on both views.

A batch of EmoDB-length clips (random speech-level noise: the cost does
not depend on the content) goes through the audio branch of
``recipes/AudioText/turbo/hparams/whisper.yaml`` as the twin pass sends it:
:class:`speechbrain_turbo.models.ModalityEncoder` over
:class:`speechbrain_turbo.hf_encoders.HFWhisperEncoder` with two views,
forward and backward. The two variants (own length and 30 s; or, with
``--frozen_layers N``, every layer trained and the first N frozen) are
timed over the same steps, alternating, after a warm-up; medians are
reported with how far apart the two views are (mean cosine of the pooled
views, dropout on) and the cosine agreement of the pooled outputs of the
two variants (dropout off).

    > python bench/whisper_step.py \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-tiny.en \
        --output results/whisper_step
    > python bench/whisper_step.py --num_layers 0 --frozen_layers 3 \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-base \
        --output results/whisper_step_frozen

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


def branch(whisper, num_layers, pad_to_30s, frozen_layers=0):
    """The recipe's audio branch: Whisper's encoder with the recipe's
    dropouts, mean pooling.

    Arguments
    ---------
    whisper : str
        Whisper folder.
    num_layers : int or None
        Encoder layers kept (None: all).
    pad_to_30s : bool
        Encode 30-s windows.
    frozen_layers : int
        Lower layers frozen and shared by the two views.

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
        frozen_layers=frozen_layers,
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
    parser.add_argument(
        "--num_layers", type=int, default=2, help="layers kept (0: all)"
    )
    parser.add_argument(
        "--frozen_layers",
        type=int,
        default=0,
        help="compare this many frozen lower layers with none (0: compare "
        "the own-length encoding with 30-s windows)",
    )
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)

    generator = torch.Generator().manual_seed(0)
    samples = int(args.seconds * 16000)
    wavs = 0.1 * torch.randn(args.batch_size, samples, generator=generator)
    lengths = torch.ones(args.batch_size)
    num_layers = args.num_layers or None
    if args.frozen_layers:
        frozen = f"first_{args.frozen_layers}_frozen"
        models = {
            "all_trained": branch(args.whisper, num_layers, False),
            frozen: branch(args.whisper, num_layers, False, args.frozen_layers),
        }
    else:
        models = {
            "own_length": branch(args.whisper, num_layers, False),
            "30s": branch(args.whisper, num_layers, True),
        }
    times = {name: [] for name in models}
    view_cosines = {name: [] for name in models}
    for step in range(args.steps + 1):
        for name, model in models.items():
            seconds, views = step_seconds(model, wavs, lengths)
            if step > 0:  # the first is a warm-up
                times[name].append(seconds)
            first, second = views.chunk(2)
            # Dropout on: the two views must differ.
            assert not torch.allclose(first, second), name
            cosine = torch.nn.functional.cosine_similarity(first, second)
            view_cosines[name].append(cosine.mean().item())
    medians = {name: statistics.median(t) for name, t in times.items()}
    with torch.no_grad():
        pooled = [model.eval()(wavs, lengths) for model in models.values()]
    cosine = torch.nn.functional.cosine_similarity(*pooled, dim=-1)
    slow, fast = (
        ("all_trained", frozen) if args.frozen_layers else ("30s", "own_length")
    )
    report = {
        "whisper": args.whisper,
        "num_layers": num_layers,
        "frozen_layers": args.frozen_layers,
        "batch_size": args.batch_size,
        "clip_seconds": args.seconds,
        "threads": torch.get_num_threads(),
        "step_seconds": times,
        "median_step_seconds": medians,
        f"speedup_{fast}": medians[slow] / medians[fast],
        "views_mean_cosine": {
            name: statistics.mean(c) for name, c in view_cosines.items()
        },
        "pooled_cosine_min": cosine.min().item(),
        "pooled_cosine_mean": cosine.mean().item(),
    }
    with open(os.path.join(args.output, "whisper_step.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
