#!/usr/bin/env python3
"""A linear probe on frozen Whisper features of EmoDB, and what encoding
the batch's own length (instead of 30-s windows) changes.

Every EmoDB utterance is encoded once by a frozen Whisper encoder
(:class:`speechbrain_turbo.hf_encoders.HFWhisperEncoder`), both on its own
length and padded to 30 s as Whisper does; each layer's output is
mean-pooled over the utterance's frames. For each of the five speaker-pair
folds of ``recipes/EmoDB/turbo`` (test: the fold, validation: the next,
training: the other three), a logistic regression on standardised features
is fitted on the training speakers; the layer and the regularisation are
chosen on validation UA only, then the test fold is scored once. Also
written: the time of each encoding, the cosine agreement between the two
encodings, and how far each of Whisper's dropouts (off in its training, on
in fine-tuning) moves the pooled features.

    > python bench/whisper_probe.py --data_folder /path/to/EmoDB \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-tiny.en \
        --output results/whisper_probe
    > python bench/whisper_probe.py --probe_only --data_folder /path/to/EmoDB \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-base \
        --output results/whisper_base_probe

Authors
 * speechbrain-turbo contributors
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from speechbrain_turbo.dataio import load_audio
from speechbrain_turbo.hf_encoders import HFWhisperEncoder
from speechbrain_turbo.metrics import classification_metrics

RECIPE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "recipes",
    "EmoDB",
    "turbo",
)
sys.path.insert(0, RECIPE)
from emodb_prepare import FOLDS, read_corpus  # noqa: E402

REGULARISATION = (0.01, 0.1, 1.0, 10.0)


def pooled_layer_features(encoder, wavs, batch_size=16):
    """Mean-pooled output of every encoder layer, per utterance.

    Arguments
    ---------
    encoder : HFWhisperEncoder
        In evaluation mode.
    wavs : list of torch.Tensor
        16 kHz waveforms.
    batch_size : int
        Utterances per forward (sorted by length, so little padding).

    Returns
    -------
    features : numpy.ndarray
        ``[layers, N, D]``.
    seconds : float
        Time spent encoding.
    """
    captured = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o: captured.append(o))
        for layer in encoder.model.layers
    ]
    order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
    pooled = [None] * len(wavs)
    seconds = 0.0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        longest = max(len(wavs[i]) for i in chunk)
        batch = torch.zeros(len(chunk), longest)
        for row, i in enumerate(chunk):
            batch[row, : len(wavs[i])] = wavs[i]
        captured.clear()
        begin = time.perf_counter()
        with torch.no_grad():
            last = encoder(batch)
        seconds += time.perf_counter() - begin
        # Layer outputs before the final norm, then the normed last one,
        # each on the batch's own frames.
        frames = last.shape[1]
        layers = [out[0] if isinstance(out, tuple) else out for out in captured]
        layers = [h[:, :frames] for h in layers[:-1]] + [last]
        for row, i in enumerate(chunk):
            real = max(1, round(len(wavs[i]) / longest * frames))
            pooled[i] = torch.stack([h[row, :real].mean(0) for h in layers])
    for hook in hooks:
        hook.remove()
    return torch.stack(pooled, dim=1).numpy(), seconds


def probe_fold(features, labels, folds, test_fold):
    """Fits on the training folds, selects on validation, scores the test.

    Arguments
    ---------
    features : numpy.ndarray
        ``[layers, N, D]``.
    labels : numpy.ndarray
        ``[N]`` class ids.
    folds : numpy.ndarray
        ``[N]`` fold of each utterance.
    test_fold : int
        The test fold; validation is the next one.

    Returns
    -------
    dict
        The chosen layer and C, validation UA, test WA and UA.
    """
    valid_fold = test_fold % len(FOLDS) + 1
    train = (folds != test_fold) & (folds != valid_fold)
    valid, test = folds == valid_fold, folds == test_fold
    classes = int(labels.max()) + 1
    best = None
    for layer in range(features.shape[0]):
        for c in REGULARISATION:
            model = make_pipeline(
                StandardScaler(), LogisticRegression(C=c, max_iter=2000)
            )
            model.fit(features[layer][train], labels[train])
            ua = classification_metrics(
                labels[valid], model.predict(features[layer][valid]), classes
            )["UA"]
            if best is None or ua > best[0]:
                best = (ua, layer, c, model)
    valid_ua, layer, c, model = best
    scores = classification_metrics(
        labels[test], model.predict(features[layer][test]), classes
    )
    return {
        "test_fold": test_fold,
        "layer": layer + 1,
        "C": c,
        "valid_UA": valid_ua,
        "test_WA": scores["WA"],
        "test_UA": scores["UA"],
    }


def dropout_shift(whisper, wavs, rate=0.1):
    """How far each kind of dropout moves the mean-pooled features.

    For each of Whisper's dropouts alone at ``rate``, every utterance is
    encoded with the dropout on (training mode) and off; per layer, the
    shift of each feature's mean over utterances is divided by that
    feature's spread over utterances (dropout off), then averaged over
    the features. A head trained on features with dropout meets features
    that far away at evaluation.

    Arguments
    ---------
    whisper : str
        Whisper folder.
    wavs : list of torch.Tensor
        16 kHz waveforms.
    rate : float
        The dropout probability.

    Returns
    -------
    dict
        Dropout kind -> per-layer mean shift, in standard deviations.
    """
    shifts = {}
    for kind in ("dropout", "activation_dropout", "attention_dropout"):
        encoder = HFWhisperEncoder(
            whisper, tempfile.mkdtemp(), config_overrides={kind: rate}
        )
        off, _ = pooled_layer_features(encoder.eval(), wavs)
        torch.manual_seed(0)
        on, _ = pooled_layer_features(encoder.train(), wavs)
        shift = np.abs(on.mean(1) - off.mean(1)) / off.std(1)
        shifts[kind] = shift.mean(-1).tolist()
        print(f"{kind} {rate}: shift per layer {np.round(shift.mean(-1), 2)}")
    return shifts


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--whisper", required=True, help="Whisper folder")
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--probe_only",
        action="store_true",
        help="the probe on own-length features only (no 30-s encoding, no "
        "dropout shifts: about an eighth of the encoding time)",
    )
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)

    entries, _ = read_corpus(args.data_folder)
    fold_of = {s: fold for fold, pair in FOLDS.items() for s in pair}
    names = sorted({e["label"] for e in entries})
    labels = np.array([names.index(e["label"]) for e in entries])
    folds = np.array([fold_of[e["speaker"]] for e in entries])
    wavs = [
        load_audio(e["wav"].replace("$data_root", args.data_folder), 16000)
        for e in entries
    ]
    audio_seconds = sum(len(w) for w in wavs) / 16000

    report = {
        "whisper": args.whisper,
        "utterances": len(entries),
        "audio_seconds": audio_seconds,
        "threads": torch.get_num_threads(),
    }
    features = {}
    modes = ("own_length",) if args.probe_only else ("own_length", "30s")
    for mode in modes:
        encoder = HFWhisperEncoder(
            args.whisper, tempfile.mkdtemp(), pad_to_30s=mode == "30s"
        ).eval()
        features[mode], seconds = pooled_layer_features(encoder, wavs)
        report[f"encode_seconds_{mode}"] = seconds
        print(f"{mode}: encoded {len(wavs)} utterances in {seconds:.1f} s")
    if not args.probe_only:
        report["speedup_own_length"] = (
            report["encode_seconds_30s"] / report["encode_seconds_own_length"]
        )
        a, b = (torch.from_numpy(features[m]) for m in modes)
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        report["pooled_cosine_per_layer"] = cosine.mean(dim=1).tolist()
        report["dropout_shift_std"] = dropout_shift(args.whisper, wavs)

    for mode in modes:
        runs = [
            probe_fold(features[mode], labels, folds, fold) for fold in FOLDS
        ]
        ua = [run["test_UA"] for run in runs]
        wa = [run["test_WA"] for run in runs]
        report[f"probe_{mode}"] = {
            "folds": runs,
            "test_UA_mean": statistics.mean(ua),
            "test_UA_std": statistics.stdev(ua),
            "test_WA_mean": statistics.mean(wa),
            "test_WA_std": statistics.stdev(wa),
        }
        summary = report[f"probe_{mode}"]
        print(
            f"probe on {mode} features: test UA "
            f"{100 * summary['test_UA_mean']:.1f} ± "
            f"{100 * summary['test_UA_std']:.1f} "
            f"(folds {[round(100 * u, 1) for u in ua]})"
        )
    with open(os.path.join(args.output, "whisper_probe.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
