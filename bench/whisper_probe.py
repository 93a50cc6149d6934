#!/usr/bin/env python3
"""A linear probe on frozen Whisper (and sentence-encoder) features, and
what encoding the batch's own length (instead of 30-s windows) changes.

Every utterance is encoded once by a frozen Whisper encoder
(:class:`speechbrain_turbo.hf_encoders.HFWhisperEncoder`), both on its own
length and padded to 30 s as Whisper does; each layer's output is
mean-pooled over the utterance's frames. With ``--text_encoder``, every
transcript is also encoded by a frozen text encoder
(:class:`speechbrain_turbo.hf_encoders.HFTextEncoder`, its last layer
mean-pooled over the tokens, as sentence-transformers pools), and the
candidates are each audio layer, the text alone and each audio layer
beside the text. For each fold (test: the fold, validation: the next,
training: the others), a logistic regression on standardised features is
fitted on the training utterances; the candidate and the regularisation
are chosen on the validation score (``--metric``) only, then the test fold
is scored once. Also written: the time of each encoding, the cosine
agreement between the two encodings, and how far each of Whisper's
dropouts (off in its training, on in fine-tuning) moves the pooled
features.

The folds: any preparation's ``fold<k>/{train,valid,test}.csv``
(``--manifests``; ``$data_root`` in ``wav`` becomes ``--data_folder``), or
EmoDB's five speaker-pair folds, which ``emodb_prepare.py`` writes from
``--data_folder`` when ``--manifests`` is not given:

    > python bench/whisper_probe.py --data_folder /path/to/EmoDB \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-tiny.en \
        --output results/whisper_probe
    > python bench/whisper_probe.py --probe_only --data_folder /path/to/EmoDB \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-base \
        --output results/whisper_base_probe
    > python bench/whisper_probe.py --probe_only \
        --manifests recipes/MUStARD/turbo/results/MUStARD_folds \
        --whisper ~/.cache/speechbrain_turbo/pretrained/whisper-tiny.en \
        --text_encoder ~/.cache/speechbrain_turbo/pretrained/all-MiniLM-L6-v2 \
        --metric macro_F1 --output results/mustard_probe

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

from speechbrain_turbo.cross_validate import fold_manifests
from speechbrain_turbo.dataio import load_audio
from speechbrain_turbo.hf_encoders import HFTextEncoder, HFWhisperEncoder
from speechbrain_turbo.manifests import read_manifest
from speechbrain_turbo.metrics import classification_metrics
from speechbrain_turbo.models import MaskedStatisticsPooling

RECIPE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "recipes",
    "EmoDB",
    "turbo",
)
sys.path.insert(0, RECIPE)
from emodb_prepare import prepare_emodb_folds  # noqa: E402

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


def pooled_text_features(text_encoder, texts, batch_size=32):
    """Last hidden states of a frozen text encoder, mean-pooled over tokens.

    Arguments
    ---------
    text_encoder : str
        HuggingFace text encoder folder (e.g. a sentence-transformers one).
    texts : list of str
        The transcripts.
    batch_size : int
        Transcripts per forward.

    Returns
    -------
    numpy.ndarray
        ``[N, D]``.
    """
    encoder = HFTextEncoder(text_encoder, tempfile.mkdtemp(), freeze=True)
    encoder.eval()
    ids = [torch.tensor(encoder.text_to_ids(t)) for t in texts]
    mean = MaskedStatisticsPooling()
    pooled = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        batch = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
        lengths = torch.tensor([len(x) for x in chunk]) / batch.shape[1]
        with torch.no_grad():
            pooled.append(mean(encoder(batch, lengths), lengths))
    return torch.cat(pooled).numpy()


def candidates(audio, text=None):
    """The feature sets a probe chooses among.

    Arguments
    ---------
    audio : numpy.ndarray
        ``[layers, N, D]`` pooled audio features.
    text : numpy.ndarray, optional
        ``[N, D']`` pooled text features.

    Returns
    -------
    list of (str, int or None, numpy.ndarray)
        ``(name, audio layer (1-based) or None, [N, D''] features)``: each
        audio layer, then (with text) the text and each layer beside it.

    Example
    -------
    >>> sets = candidates(np.zeros((2, 3, 4)), np.ones((3, 5)))
    >>> [name for name, _, _ in sets][2:]
    ['text', 'audio layer 1 + text', 'audio layer 2 + text']
    >>> [(layer, f.shape[1]) for _, layer, f in sets]
    [(1, 4), (2, 4), (None, 5), (1, 9), (2, 9)]
    """
    sets = [(f"audio layer {k + 1}", k + 1, f) for k, f in enumerate(audio)]
    if text is not None:
        sets.append(("text", None, text))
        sets += [
            (f"audio layer {k + 1} + text", k + 1, np.hstack([f, text]))
            for k, f in enumerate(audio)
        ]
    return sets


def probe_fold(feature_sets, labels, split, metric="UA"):
    """Fits on the training rows, selects on validation, scores the test.

    Arguments
    ---------
    feature_sets : list
        :func:`candidates`' output.
    labels : numpy.ndarray
        ``[N]`` class ids.
    split : dict
        ``train``, ``valid``, ``test``: row indices, and ``test_fold``.
    metric : str
        The validation score that chooses: ``UA`` or ``macro_F1``.

    Returns
    -------
    dict
        The chosen feature set (and audio layer) and C, the validation
        score, the test WA, UA and macro-F1.
    """
    train, valid, test = (split[key] for key in ("train", "valid", "test"))
    classes = int(labels.max()) + 1
    best = None
    for name, layer, features in feature_sets:
        for c in REGULARISATION:
            model = make_pipeline(
                StandardScaler(), LogisticRegression(C=c, max_iter=2000)
            )
            model.fit(features[train], labels[train])
            score = classification_metrics(
                labels[valid], model.predict(features[valid]), classes
            )[metric]
            if best is None or score > best[0]:
                best = (score, name, layer, c, model, features)
    valid_score, name, layer, c, model, features = best
    scores = classification_metrics(
        labels[test], model.predict(features[test]), classes
    )
    return {
        "test_fold": split["test_fold"],
        "features": name,
        "layer": layer,
        "C": c,
        f"valid_{metric}": valid_score,
        **{f"test_{key}": scores[key] for key in ("WA", "UA", "macro_F1")},
    }


def manifest_folds(folder, data_root=""):
    """The utterances and folds of a preparation's ``fold<k>/`` manifests.

    Arguments
    ---------
    folder : str
        Holds ``fold1``, ``fold2``... each with ``train.csv``,
        ``valid.csv`` and ``test.csv``.
    data_root : str
        Replaces ``$data_root`` in ``wav``.

    Returns
    -------
    entries : list of dict
        ``wav``, ``text``, ``label`` of every utterance (once each).
    splits : list of dict
        Per fold: ``test_fold`` and the ``train``, ``valid``, ``test`` rows.
    """
    names = [n for n in os.listdir(folder) if n.startswith("fold")]
    folds = sorted(int(n[len("fold") :]) for n in names)
    if not folds:
        raise SystemExit(f"{folder}: no fold<k> folder of manifests")
    entries, row_of, splits = [], {}, []
    for fold in folds:
        split = {"test_fold": fold}
        for part, path in fold_manifests(folder, fold).items():
            rows = []
            for item_id, _, entry in read_manifest(path, data_root):
                if item_id not in row_of:
                    row_of[item_id] = len(entries)
                    entries.append(entry)
                rows.append(row_of[item_id])
            split[part] = np.array(rows)
        splits.append(split)
    return entries, splits


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
    parser.add_argument(
        "--data_folder",
        default="",
        help="the EmoDB folder (without --manifests), or what $data_root "
        "in the manifests stands for",
    )
    parser.add_argument(
        "--manifests", help="a folder of fold<k>/{train,valid,test}.csv"
    )
    parser.add_argument("--whisper", required=True, help="Whisper folder")
    parser.add_argument(
        "--text_encoder", help="a text encoder folder: adds text features"
    )
    parser.add_argument(
        "--metric",
        default="UA",
        choices=("UA", "macro_F1"),
        help="the validation score that chooses",
    )
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--probe_only",
        action="store_true",
        help="the probe on own-length features only (no 30-s encoding, no "
        "dropout shifts: about an eighth of the encoding time)",
    )
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)

    manifests = args.manifests
    if not manifests:
        # EmoDB's five speaker-pair folds, as its preparation writes them.
        manifests = tempfile.mkdtemp()
        prepare_emodb_folds(args.data_folder, manifests)
    entries, splits = manifest_folds(manifests, args.data_folder)
    names = sorted({e["label"] for e in entries})
    labels = np.array([names.index(e["label"]) for e in entries])
    wavs = [load_audio(e["wav"], 16000) for e in entries]
    audio_seconds = sum(len(w) for w in wavs) / 16000

    report = {
        "whisper": args.whisper,
        "text_encoder": args.text_encoder,
        "metric": args.metric,
        "utterances": len(entries),
        "audio_seconds": audio_seconds,
        "threads": torch.get_num_threads(),
    }
    text = None
    if args.text_encoder:
        begin = time.perf_counter()
        text = pooled_text_features(
            args.text_encoder, [e["text"] for e in entries]
        )
        report["encode_seconds_text"] = time.perf_counter() - begin
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
        feature_sets = candidates(features[mode], text)
        runs = [
            probe_fold(feature_sets, labels, split, args.metric)
            for split in splits
        ]
        summary = {"folds": runs}
        for key in ("UA", "WA", "macro_F1"):
            scores = [run[f"test_{key}"] for run in runs]
            summary[f"test_{key}_mean"] = statistics.mean(scores)
            summary[f"test_{key}_std"] = statistics.stdev(scores)
        report[f"probe_{mode}"] = summary
        scores = [round(100 * run[f"test_{args.metric}"], 1) for run in runs]
        print(
            f"probe on {mode} features: test {args.metric} "
            f"{100 * summary[f'test_{args.metric}_mean']:.1f} ± "
            f"{100 * summary[f'test_{args.metric}_std']:.1f} "
            f"(folds {scores}; chosen {[run['features'] for run in runs]})"
        )
    with open(os.path.join(args.output, "whisper_probe.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
