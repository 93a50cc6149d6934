#!/usr/bin/env python3
"""What Turbo costs over the cross-entropy baseline: per training step (time,
peak memory, the contrastive loss's share) and per utterance at inference.

A benchmark, not a test. Two setups, each built from a recipe hparams file
exactly as ``train.py`` builds it:

- ``demo``: ``hparams/demo.yaml`` (the small convolutional encoders);
- ``full``: ``hparams/turbo.yaml`` with randomly initialised full-size
  wav2vec2-base and roberta-base architectures (saved locally; nothing is
  downloaded), the CNN feature encoder frozen.

Each setup gets one fixed training batch of noise waveforms of 3-8 s and
transcripts of 20-40 tokens (cut at a word boundary, so a few more with a
subword tokenizer). The variants are the recipe's own switches on
ONE ``TurboBrain`` (the same weights and optimizer): ``baseline``
(``turbo_weight=0``, ``twin_pass=False``), ``turbo`` and, for the full
setup, ``turbo_unshared_cnn`` (the frozen CNN run once per view) and
``turbo_checkpointing`` (the encoders' gradient checkpointing on). Every
repeat times one ``fit_batch`` of each variant, in rotating order, so that
all are measured side by side; the figures are medians over the repeats.

- step ratio: median Turbo step / median baseline step;
- loss share: forward + backward of ``TurboLoss`` alone, on views of the
  step's shape, over the median Turbo step;
- peak memory: one more step per variant; on a GPU the allocator's peak, on
  a CPU the process's peak resident set (``VmHWM``, reset before the step);
  both include the weights and optimizer state;
- inference: ``TurboClassifier.classify_batch`` on one utterance (waveform +
  transcript) at a time, for a model built from the Turbo hparams and one
  from the baseline's, median time per utterance.

On a CPU the script re-runs itself with glibc's heap kept between steps
(see :func:`keep_heap_between_steps`; ``--allocator system`` to compare).
``results.json`` and ``results.md`` are rewritten after every setup.

    > python bench/step_cost.py --report bench/results/cpu

Authors
 * speechbrain-turbo contributors
"""

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HPARAMS = os.path.join(REPO, "recipes", "IEMOCAP", "turbo", "hparams")
sys.path.insert(0, REPO)

import sentencepiece  # noqa: E402
import speechbrain as sb  # noqa: E402
from hyperpyyaml import load_hyperpyyaml  # noqa: E402
from speechbrain.dataio.batch import PaddedBatch  # noqa: E402

from speechbrain_turbo.brain import TurboBrain  # noqa: E402
from speechbrain_turbo.dataio import (  # noqa: E402
    INPUT_KEYS,
    normalize_transcript,
    transcript_group_ids,
)
from speechbrain_turbo.inference import TurboClassifier  # noqa: E402
from speechbrain_turbo.random_hf_models import (  # noqa: E402
    save_random_speech_model,
    save_random_text_model,
)

BASELINE = {"turbo_weight": 0.0, "twin_pass": False}
TARGETS = {
    "turbo": 1.85,
    "turbo_unshared_cnn": 2.0,
    "loss_share": 0.01,
    "inference": 1.02,
    "memory": 2.0,
}
SAMPLE_RATE = 16000
HEAP_TUNABLES = (
    "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
)


def parse_args():
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", required=True, help="results folder")
    parser.add_argument("--work", default=None, help="scratch folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32"])
    parser.add_argument("--setups", nargs="+", default=["demo", "full"])
    parser.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="training batch (default: the hparams file's batch_size)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed steps per variant"
    )
    parser.add_argument(
        "--demo_repeats",
        type=int,
        default=30,
        help="the same for the demo setup, whose steps take milliseconds",
    )

    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--hf_size",
        choices=["base", "tiny"],
        default="base",
        help="the full setup's encoders (tiny: a smoke test, no figures)",
    )
    parser.add_argument("--loss_repeats", type=int, default=20)
    parser.add_argument("--inference_utterances", type=int, default=8)
    parser.add_argument("--min_seconds", type=float, default=3.0)
    parser.add_argument("--max_seconds", type=float, default=8.0)
    parser.add_argument("--min_tokens", type=int, default=20)
    parser.add_argument("--max_tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--allocator",
        choices=["caching", "system"],
        default="caching",
        help="on CPU: keep glibc's heap between steps, or its default",
    )
    return parser.parse_args()


def pseudo_sentences(count, rng, vocabulary=400, words=60):
    """Sentences of made-up words: token counts are all that matters here."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    lexicon = [
        "".join(syllables[i] for i in torch.randint(70, (2,), generator=rng))
        for _ in range(vocabulary)
    ]
    return [
        " ".join(
            lexicon[i]
            for i in torch.randint(vocabulary, (words,), generator=rng)
        )
        for _ in range(count)
    ]


def trim_to_tokens(sentence, text_to_ids, num_tokens):
    """The shortest prefix of ``sentence`` with at least ``num_tokens``."""
    words = sentence.split()
    for end in range(1, len(words) + 1):
        text = " ".join(words[:end])
        if len(text_to_ids(text)) >= num_tokens:
            return text
    raise ValueError(f"{sentence!r} has fewer than {num_tokens} tokens")


def load_setup(name, args, work, corpus, overrides):
    """Loads a recipe hparams file as ``train.py`` does (the full setup's
    random encoders are saved on first use, their vocabulary from
    ``corpus``).
    """
    common = {
        "data_folder": os.path.join(work, "no_data"),
        "output_folder": os.path.join(work, name),
        **overrides,
    }
    if name == "demo":
        return _load(os.path.join(HPARAMS, "demo.yaml"), common)
    if name != "full":
        raise ValueError(f"Unknown setup {name!r}: demo or full")
    audio = os.path.join(work, f"wav2vec2-{args.hf_size}")
    text = os.path.join(work, f"roberta-{args.hf_size}")
    if not os.path.isdir(audio):
        save_random_speech_model(audio, "wav2vec2", args.hf_size)
        save_random_text_model(text, corpus, "roberta", args.hf_size)
    common.update(
        audio_hub=audio,
        text_hub=text,
        pretrained_folder=os.path.join(work, "pretrained"),
    )
    return _load(os.path.join(HPARAMS, "turbo.yaml"), common)


def demo_tokenizer(hparams, corpus, work):
    """The demo's SentencePiece, trained on ``corpus`` as the recipe trains
    it on the training transcripts.
    """
    model = os.path.join(work, "demo_sentencepiece")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=model,
        vocab_size=hparams["vocab_size"],
        model_type="unigram",
        minloglevel=2,
    )
    return sentencepiece.SentencePieceProcessor(model_file=model + ".model")


def _load(path, overrides):
    """``load_hyperpyyaml`` on a file."""
    with open(path, encoding="utf-8") as f:
        return load_hyperpyyaml(f, overrides)


def make_batch(args, batch_size, text_to_ids, corpus, num_classes, rng):
    """A training batch: noise waveforms, transcripts, random labels."""
    items = []
    for row in range(batch_size):
        seconds = args.min_seconds + float(torch.rand(1, generator=rng)) * (
            args.max_seconds - args.min_seconds
        )
        tokens = int(
            torch.randint(
                args.min_tokens, args.max_tokens + 1, (1,), generator=rng
            )
        )
        text = trim_to_tokens(corpus[row % len(corpus)], text_to_ids, tokens)
        items.append(
            {
                "id": f"bench_{row}",
                "audio": 0.1
                * torch.randn(int(seconds * SAMPLE_RATE), generator=rng),
                "token_ids": torch.LongTensor(text_to_ids(text)),
                "transcript": normalize_transcript(text),
                "raw_text": text,
                "label": torch.randint(num_classes, (1,), generator=rng),
            }
        )
    return items


class Variant:
    """Sets a variant's switches on the brain for one step.

    Arguments
    ---------
    brain : TurboBrain
        The brain.
    name : str
        ``baseline`` (no twin pass, no contrastive term), ``turbo``,
        ``turbo_unshared_cnn`` (the frozen CNN run per view) or
        ``turbo_checkpointing`` (the HF encoders recompute their
        activations in backward).
    """

    def __init__(self, brain, name):
        self.brain, self.name = brain, name
        self.original = {key: getattr(brain.hparams, key) for key in BASELINE}
        self.hf_encoders = [
            getattr(brain.hparams, key)
            for key in ("audio_model", "text_model")
            if hasattr(brain.hparams, key)
        ]

    def __enter__(self):
        if self.name == "baseline":
            for key, value in BASELINE.items():
                setattr(self.brain.hparams, key, value)
        if self.name == "turbo_unshared_cnn":
            self.brain.hparams.audio_model.share_front_end = False
        if self.name == "turbo_checkpointing":
            for encoder in self.hf_encoders:
                encoder.enable_gradient_checkpointing()
        return self

    def __exit__(self, *exc):
        for key, value in self.original.items():
            setattr(self.brain.hparams, key, value)
        if self.name == "turbo_unshared_cnn":
            self.brain.hparams.audio_model.share_front_end = True
        if self.name == "turbo_checkpointing":
            for encoder in self.hf_encoders:
                encoder.disable_gradient_checkpointing()


def synchronize(device):
    """Waits for the GPU, if any."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device, cpu_times=None):
    """Seconds that ``function()`` takes; appends the process's (user,
    system) CPU seconds to ``cpu_times`` if given.
    """
    synchronize(device)
    start, start_cpu = time.perf_counter(), os.times()
    function()
    synchronize(device)
    seconds, end_cpu = time.perf_counter() - start, os.times()
    if cpu_times is not None:
        cpu_times.append(
            (end_cpu.user - start_cpu.user, end_cpu.system - start_cpu.system)
        )
    return seconds


def peak_memory(function, device):
    """Peak memory in GiB while ``function()`` runs (see the module doc)."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        function()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**30
    # Hand freed heap back to the system, then reset the peak RSS.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    function()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError("No VmHWM in /proc/self/status")


def measure_training(brain, batch, variants, args, repeats):
    """Step times (and CPU times) of each variant, measured side by side,
    then the peak memory and the FLOPs of one more step of each.
    """
    device = brain.device
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    times = {name: [] for name in variants}
    cpu_times = {name: [] for name in variants}
    for repeat in range(args.warmup + repeats):
        shift = repeat % len(variants)
        for name in variants[shift:] + variants[:shift]:
            measured = repeat >= args.warmup
            with Variant(brain, name):
                seconds = timed(
                    lambda: brain.fit_batch(batch),
                    device,
                    cpu_times[name] if measured else None,
                )
            if measured:
                times[name].append(seconds)
        print(
            f"  repeat {repeat}: "
            + ", ".join(f"{n} {t[-1]:.3f}s" for n, t in times.items() if t),
            flush=True,
        )
    memory, flops = {}, {}
    for name in variants:
        with Variant(brain, name):
            memory[name] = peak_memory(lambda: brain.fit_batch(batch), device)
            # Matmuls, convolutions and attention, forward and backward:
            # the unavoidable part of the step's cost.
            with FlopCounterMode(display=False) as counter:
                brain.fit_batch(batch)
            flops[name] = counter.get_total_flops()
    return times, cpu_times, memory, flops


def audio_branch_flops(brain, batch, variants):
    """FLOPs of the audio encoder alone, forward and backward, per variant:
    the part of the step that a frozen CNN shared by the views saves on.
    """
    encoder = brain.modules.audio_encoder
    wav = batch.audio.data.to(brain.device)
    lengths = batch.audio.lengths.to(brain.device)
    flops = {}
    for name in variants:
        views = 1 if name == "baseline" else 2
        with Variant(brain, name), brain.training_ctx:
            with FlopCounterMode(display=False) as counter:
                embedding = encoder(wav, lengths, num_views=views)
                embedding.float().square().mean().backward()
        flops[name] = counter.get_total_flops()
    brain.zero_grad(set_to_none=True)
    return flops


def measure_loss(brain, batch, args):
    """Forward + backward of the Turbo loss alone, on views of the step's
    shape (two views of each modality's projection), in seconds.
    """
    device = brain.device
    rows = len(batch.id)
    dim = brain.hparams.projection_dim
    labels = batch.label.data.reshape(-1).to(device)
    groups = transcript_group_ids(batch.transcript).to(device)
    views = {
        m: tuple(
            torch.randn(rows, dim, device=device, requires_grad=True)
            for _ in range(2)
        )
        for m in brain.modalities
    }

    def loss_step():
        """Forward and backward of the contrastive loss alone."""
        with brain.training_ctx:
            out = brain.modules.turbo_loss(views, labels=labels, groups=groups)
        out["loss"].backward()

    for _ in range(3):
        loss_step()
    return [timed(loss_step, device) for _ in range(args.loss_repeats)]


def measure_inference(classifiers, utterances, device, args, repeats):
    """Median seconds per utterance of each classifier, side by side."""

    def classify_all(classifier):
        """Classifies every utterance, one at a time."""
        for wav, text in utterances:
            classifier.classify_batch(wav.unsqueeze(0), texts=[text])

    names = list(classifiers)
    times = {name: [] for name in names}
    for repeat in range(args.warmup + repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = timed(partial(classify_all, classifiers[name]), device)
            if repeat >= args.warmup:
                times[name].append(seconds / len(utterances))
    return times


def build_classifier(hparams, device):
    """The exported model's inference interface, on these hparams' modules."""
    keep = [name for name in hparams["modules"] if name != "turbo_loss"]
    needed = ["modalities", "sample_rate", "label_encoder"]
    extra = ["text_tokenizer", "text_model"]
    return TurboClassifier(
        modules={name: hparams["modules"][name] for name in keep},
        hparams={k: hparams[k] for k in needed + extra if k in hparams},
        run_opts={"device": device},
    )


def summarise(values):
    """Median and range of a list of seconds (or GiB)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def measure_setup(name, precision, args, work):
    """All figures of one setup at one precision."""
    overrides = {}
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    corpus = pseudo_sentences(500, torch.Generator().manual_seed(args.seed))
    hparams = load_setup(name, args, work, corpus, overrides)
    if name == "demo":
        # The exported demo model keeps its SentencePiece as text_tokenizer.
        tokenizer = demo_tokenizer(hparams, corpus, work)
        hparams["text_tokenizer"] = tokenizer
        text_to_ids = tokenizer.encode_as_ids
    else:
        tokenizer = None
        text_to_ids = hparams["text_model"].text_to_ids
    num_classes = hparams["out_n_neurons"]
    labels = [f"class{i}" for i in range(num_classes)]
    hparams["label_encoder"].update_from_iterable(labels)
    hparams["label_encoder"].expect_len(num_classes)
    rng = torch.Generator().manual_seed(args.seed)
    items = make_batch(
        args, hparams["batch_size"], text_to_ids, corpus, num_classes, rng
    )
    batch = PaddedBatch(items)
    brain = TurboBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": args.device, "precision": precision},
    )
    brain.on_fit_start()
    variants = ["baseline", "turbo"]
    if getattr(hparams.get("audio_model"), "shares_run_once", False):
        variants.append("turbo_unshared_cnn")
    if "text_model" in hparams:
        variants.append("turbo_checkpointing")
    print(f"{name} {precision}: training step, {variants}", flush=True)
    repeats = args.demo_repeats if name == "demo" else args.repeats
    step_times, cpu_times, memory, flops = measure_training(
        brain, batch, variants, args, repeats
    )
    loss_times = measure_loss(brain, batch, args)
    audio_flops = audio_branch_flops(brain, batch, variants)

    print(f"{name} {precision}: inference", flush=True)
    baseline_hparams = load_setup(
        name, args, work, corpus, {**overrides, **BASELINE}
    )
    baseline_hparams["label_encoder"].update_from_iterable(labels)
    # Statistics that training accumulates (the demo's feature normalizer).
    with torch.no_grad():
        for m in hparams["modalities"]:
            encoder = baseline_hparams["modules"][f"{m}_encoder"]
            encoder.train()(*batch[INPUT_KEYS[m]])
    if tokenizer is not None:
        baseline_hparams["text_tokenizer"] = tokenizer
    classifiers = {
        "turbo": build_classifier(hparams, args.device),
        "baseline": build_classifier(baseline_hparams, args.device),
    }
    for classifier in classifiers.values():
        classifier.mods.to(args.device)
    utterances = [
        (item["audio"], item["raw_text"])
        for item in items[: args.inference_utterances]
    ]
    inference = measure_inference(
        classifiers, utterances, args.device, args, repeats
    )

    step = {n: summarise(t) for n, t in step_times.items()}
    base = step["baseline"]["median"]
    return {
        "setup": name,
        "precision": precision,
        "batch_size": hparams["batch_size"],
        "audio_seconds": [
            round(len(i["audio"]) / SAMPLE_RATE, 2) for i in items
        ],
        "tokens": [len(i["token_ids"]) for i in items],
        "parameters_M": round(
            sum(p.numel() for p in brain.modules.parameters()) / 1e6, 2
        ),
        "step_s": step,
        "step_ratio": {n: s["median"] / base for n, s in step.items()},
        "flop_ratio": {n: f / flops["baseline"] for n, f in flops.items()},
        "tflops_per_step": {n: f / 1e12 for n, f in flops.items()},
        "audio_branch_flop_ratio": {
            n: f / audio_flops["baseline"] for n, f in audio_flops.items()
        },
        "cpu_user_sys_s": {
            n: [statistics.median(t[i] for t in times) for i in (0, 1)]
            for n, times in cpu_times.items()
        },
        "paired_step_ratios": {
            n: [t / b for t, b in zip(step_times[n], step_times["baseline"])]
            for n in step_times
        },
        "loss_s": summarise(loss_times),
        "loss_share": statistics.median(loss_times) / step["turbo"]["median"],
        "peak_GiB": memory,
        "memory_ratio": {n: m / memory["baseline"] for n, m in memory.items()},
        "inference_s_per_utterance": {
            n: summarise(t) for n, t in inference.items()
        },
        "inference_ratio": statistics.median(inference["turbo"])
        / statistics.median(inference["baseline"]),
    }


def machine(device):
    """Where the numbers come from."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                line.split(":", 1)[1].strip()
                for line in f
                if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} threads"


def figures(result):
    """(figure, measured, target or None) rows of one setup's result."""
    step, flop = result["step_ratio"], result["flop_ratio"]
    full = result["setup"] == "full"
    rows = [
        (
            "Turbo step / baseline step"
            + (", frozen CNN shared" if "turbo_unshared_cnn" in step else ""),
            f"{step['turbo']:.3f} (FLOPs {flop['turbo']:.3f}; audio "
            f"branch {result['audio_branch_flop_ratio']['turbo']:.3f})",
            step["turbo"],
            TARGETS["turbo"] if full else None,
        )
    ]
    if "turbo_unshared_cnn" in step:
        rows.append(
            (
                "Turbo step / baseline step, CNN run per view",
                f"{step['turbo_unshared_cnn']:.3f} "
                f"(FLOPs {flop['turbo_unshared_cnn']:.3f})",
                step["turbo_unshared_cnn"],
                TARGETS["turbo_unshared_cnn"] if full else None,
            )
        )
    if "turbo_checkpointing" in step:
        rows += [
            (
                "Turbo step / baseline step, gradient checkpointing",
                f"{step['turbo_checkpointing']:.3f}",
                step["turbo_checkpointing"],
                None,
            ),
            (
                "peak memory Turbo / baseline, gradient checkpointing",
                f"{result['memory_ratio']['turbo_checkpointing']:.3f}",
                result["memory_ratio"]["turbo_checkpointing"],
                None,
            ),
        ]
    rows += [
        (
            "contrastive loss / Turbo step",
            f"{100 * result['loss_share']:.3f} %",
            result["loss_share"],
            TARGETS["loss_share"],
        ),
        (
            "peak memory Turbo / baseline",
            f"{result['memory_ratio']['turbo']:.3f}",
            result["memory_ratio"]["turbo"],
            TARGETS["memory"],
        ),
        (
            "inference time per utterance Turbo / baseline",
            f"{result['inference_ratio']:.3f}",
            result["inference_ratio"],
            TARGETS["inference"],
        ),
    ]
    return rows


def write_report(folder, meta, results):
    """results.json and results.md."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    lines = [
        f"Machine: {meta['machine']}; torch {meta['torch']}; allocator: "
        f"{meta['allocator']}.",
        f"Command: `{meta['command']}`",
        "",
        "| setup | precision | batch | figure | measured | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for figure, text, value, target in figures(r):
            if target is None:
                target_text, met = "", ""
            else:
                percent = figure.startswith("contrastive")
                target_text = (
                    f"≤ {100 * target:g} %" if percent else f"≤ {target:g}"
                )
                met = "yes" if value <= target else "no"
            lines.append(
                f"| {r['setup']} | {r['precision']} | {r['batch_size']} | "
                f"{figure} | {text} | {target_text} | {met} |"
            )
    lines += [
        "",
        "| setup | precision | variant | step s, median (min-max) | "
        "CPU user / system s | TFLOP | peak GiB | inference ms / utt |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for variant, s in r["step_s"].items():
            inference = r["inference_s_per_utterance"].get(variant)
            user, system = r["cpu_user_sys_s"][variant]
            lines.append(
                f"| {r['setup']} | {r['precision']} | {variant} | "
                f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f}) | "
                f"{user:.1f} / {system:.1f} | "
                f"{r['tflops_per_step'][variant]:.3f} | "
                f"{r['peak_GiB'][variant]:.2f} | "
                + (f"{1000 * inference['median']:.1f}" if inference else "")
                + " |"
            )
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def keep_heap_between_steps(args):
    """Re-runs this script with glibc's heap kept between steps (on CPU).

    glibc gives blocks over 32 MiB back to the system when they are freed,
    so each step faults its large activations in again; the doubled batch
    of the twin pass crosses that size far more often, and on the 2-core
    machine the kernel time added more than half a baseline step to each
    Turbo step. A GPU allocator caches its blocks; ``GLIBC_TUNABLES`` makes
    glibc do the same (no mmap, no trimming). ``--allocator system`` keeps
    glibc's default.
    """
    on_cpu = torch.device(args.device).type == "cpu"
    is_glibc = platform.libc_ver()[0] == "glibc"
    if args.allocator == "system" or not on_cpu:
        return "default"
    if not is_glibc:
        return "default (not glibc)"
    if os.environ.get("GLIBC_TUNABLES") != HEAP_TUNABLES:
        env = dict(os.environ, GLIBC_TUNABLES=HEAP_TUNABLES)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    return f"GLIBC_TUNABLES={HEAP_TUNABLES}"


def main():
    """Measures every setup and precision; writes the report as it goes."""
    args = parse_args()
    allocator = keep_heap_between_steps(args)
    torch.manual_seed(args.seed)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.work or tempfile.mkdtemp(prefix="turbo_bench_")
    meta = {
        "machine": machine(args.device),
        "torch": torch.__version__,
        "allocator": allocator,
        "command": "python bench/step_cost.py " + " ".join(sys.argv[1:]),
        "args": vars(args),
    }
    results = []
    for name in args.setups:
        for precision in args.precisions:
            start = time.time()
            results.append(measure_setup(name, precision, args, work))
            results[-1]["wall_s"] = round(time.time() - start, 1)
            write_report(args.report, meta, results)
    with open(os.path.join(args.report, "results.md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
