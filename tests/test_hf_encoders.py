"""Pretrained HF encoder wrappers: dropout overrides, padding, tokenizer."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from speechbrain_turbo.hf_encoders import HFSpeechEncoder, HFTextEncoder
from speechbrain_turbo.random_hf_models import (
    save_random_speech_model,
    save_random_text_model,
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {
        "wav2vec2": save_random_speech_model(str(root / "w2v"), "wav2vec2"),
        "wavlm": save_random_speech_model(str(root / "wavlm"), "wavlm"),
        "hubert": save_random_speech_model(str(root / "hubert"), "hubert"),
        "roberta": save_random_text_model(
            str(root / "roberta"), ["i am fine", "go away"], "roberta"
        ),
        "bert": save_random_text_model(str(root / "bert"), ["hi"], "bert"),
    }


def dropout_rates(module):
    return {m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)}


@pytest.mark.parametrize("family", ["wavlm", "hubert"])
def test_speech_encoder_dropout_comes_from_config_overrides(
    sources, tmp_path, family
):
    encoder = HFSpeechEncoder(
        sources[family],
        str(tmp_path),
        config_overrides={
            "hidden_dropout": 0.25,
            "attention_dropout": 0.25,
            "feat_proj_dropout": 0.25,
            "activation_dropout": 0.25,
        },
    )
    assert encoder.model.config.hidden_dropout == 0.25
    assert dropout_rates(encoder.model) == {0.25}
    # The frozen CNN needs no gradient, not even for its input.
    assert not any(
        p.requires_grad for p in encoder.model.feature_extractor.parameters()
    )
    assert not encoder.model.feature_extractor._requires_grad


def test_layer_drop_is_switched_off_and_refused(sources, tmp_path):
    # A pretrained config with layer drop (wav2vec 2.0 Base has 0.1 or 0.05).
    folder = tmp_path / "with_layerdrop"
    shutil.copytree(sources["wav2vec2"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["layerdrop"] = 0.1
    (folder / "config.json").write_text(json.dumps(config))
    encoder = HFSpeechEncoder(str(folder), str(tmp_path / "save"))
    assert encoder.model.config.layerdrop == 0
    with pytest.raises(ValueError, match="layerdrop=0.2.*must be 0") as error:
        HFSpeechEncoder(
            str(folder),
            str(tmp_path / "save"),
            config_overrides={"layerdrop": 0.2},
        )
    assert str(folder) in str(error.value)


def test_unknown_config_override_names_the_key_and_the_source(
    sources, tmp_path
):
    with pytest.raises(ValueError) as error:
        HFSpeechEncoder(
            sources["wavlm"],
            str(tmp_path),
            config_overrides={"hidden_dropout_prob": 0.1},
        )
    message = str(error.value)
    assert "'hidden_dropout_prob'" in message
    assert sources["wavlm"] in message
    assert "hidden_dropout" in message


@pytest.mark.parametrize("family", ["roberta", "bert"])
def test_text_encoder_ignores_padding(sources, tmp_path, family):
    encoder = HFTextEncoder(
        sources[family],
        str(tmp_path),
        config_overrides={"hidden_dropout_prob": 0.3},
    )
    assert encoder.model.config.hidden_dropout_prob == 0.3
    encoder.eval()
    short = encoder.text_to_ids("go away")
    long = encoder.text_to_ids("i am fine, go away")
    assert short[0] == encoder.tokenizer.cls_token_id
    # Padding with an arbitrary id (SpeechBrain pads with 0) changes nothing.
    padded = torch.tensor([short + [7] * (len(long) - len(short)), long])
    lengths = torch.tensor([len(short) / len(long), 1.0])
    batch = encoder(padded, lengths)
    alone = encoder(torch.tensor([short]), torch.ones(1))
    torch.testing.assert_close(batch[0, : len(short)], alone[0])


def test_text_is_truncated_to_the_position_embeddings(sources, tmp_path):
    encoder = HFTextEncoder(sources["roberta"], str(tmp_path))
    ids = encoder.text_to_ids("go away " * 100)
    # Tiny RoBERTa: 64 positions, of which padding_idx + 1 are reserved.
    assert len(ids) == 64 - (encoder.model.embeddings.padding_idx + 1)
    encoder(torch.tensor([ids]), torch.ones(1))


NO_DROPOUT = {
    "wavlm": {
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "feat_proj_dropout": 0.0,
        "activation_dropout": 0.0,
        "layerdrop": 0.0,
    },
    "roberta": {
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
}


@pytest.mark.parametrize("family", ["wavlm", "roberta"])
def test_gradient_checkpointing_gives_the_same_gradients(
    sources, tmp_path, family
):
    grads = []
    for checkpointing in (False, True):
        cls = HFSpeechEncoder if family == "wavlm" else HFTextEncoder
        encoder = cls(
            sources[family],
            str(tmp_path),
            config_overrides=NO_DROPOUT[family],
            gradient_checkpointing=checkpointing,
        )
        encoder.train()
        assert encoder.model.is_gradient_checkpointing == checkpointing
        if family == "wavlm":
            inputs = torch.randn(
                2, 8000, generator=torch.Generator().manual_seed(0)
            )
        else:
            inputs = torch.tensor(
                [encoder.text_to_ids("i am fine, go away")] * 2
            )
        encoder(inputs, torch.tensor([1.0, 0.6])).square().mean().backward()
        grads.append(
            {
                n: p.grad
                for n, p in encoder.named_parameters()
                if p.grad is not None
            }
        )
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm", "hubert"])
def test_twin_pass_shares_the_frozen_cnn_and_matches_two_full_passes(
    sources, tmp_path, family
):
    from speechbrain_turbo.models import ModalityEncoder

    overrides = dict(NO_DROPOUT["wavlm"])
    model = ModalityEncoder(
        HFSpeechEncoder(
            sources[family], str(tmp_path), config_overrides=overrides
        )
    )
    model.train()  # no dropout: both views must equal the one-view output
    assert model.encoder.shares_run_once
    wav = torch.randn(3, 9000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([1.0, 0.7, 0.45])
    cnn_calls = []
    model.encoder.model.feature_extractor.register_forward_hook(
        lambda module, args, out: cnn_calls.append(out.shape[0])
    )
    twin = model(wav, lengths, num_views=2)
    assert cnn_calls == [3]  # the CNN ran once, on B rows
    single = model(wav, lengths, num_views=1)
    torch.testing.assert_close(twin[:3], single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(twin[3:], single, atol=1e-5, rtol=1e-5)
    twin.sum().backward()
    layer = model.encoder.model.encoder.layers[0]
    assert any(p.grad is not None for p in layer.parameters())
    # Sharing off (what the benchmark compares against): the CNN runs on
    # both copies, with the same result.
    model.encoder.share_front_end = False
    cnn_calls.clear()
    with torch.no_grad():
        unshared = model(wav, lengths, num_views=2)
    assert cnn_calls == [6]
    torch.testing.assert_close(unshared, twin.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "family, spec_augment",
    [
        ("wav2vec2", False),
        ("wav2vec2", True),
        ("wavlm", False),
        ("hubert", False),
        ("roberta", False),
        ("bert", False),
    ],
)
def test_every_trainable_parameter_gets_a_gradient(
    sources, tmp_path, family, spec_augment
):
    """What DDP needs (without find_unused_parameters): no trainable
    parameter is left out of the twin pass's graph."""
    from speechbrain_turbo.models import ModalityEncoder

    if family in ("roberta", "bert"):
        encoder = HFTextEncoder(sources[family], str(tmp_path))
        inputs = torch.tensor([encoder.text_to_ids("i am fine, go away")] * 2)
    else:
        encoder = HFSpeechEncoder(
            sources[family], str(tmp_path), apply_spec_augment=spec_augment
        )
        inputs = torch.randn(
            2, 9000, generator=torch.Generator().manual_seed(0)
        )
    model = ModalityEncoder(encoder).train()
    model(inputs, torch.tensor([1.0, 0.7]), num_views=2).sum().backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert [n for n, p in trainable.items() if p.grad is None] == []
    # SpecAugment's mask embedding trains only when SpecAugment is on.
    mask_embedding = [n for n in trainable if "masked_spec_embed" in n]
    assert bool(mask_embedding) == spec_augment


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm"])
def test_shared_cnn_frame_mask_matches_huggingface_with_an_adapter(
    tmp_path, family
):
    from speechbrain_turbo.models import ModalityEncoder

    source = save_random_speech_model(
        str(tmp_path / family),
        family,
        add_adapter=True,
        adapter_stride=2,
        num_adapter_layers=1,
        output_hidden_size=16,
    )
    model = ModalityEncoder(
        HFSpeechEncoder(
            source, str(tmp_path), config_overrides=NO_DROPOUT["wavlm"]
        )
    ).train()
    wav = torch.randn(3, 9000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([1.0, 0.7, 0.45])
    with torch.no_grad():
        twin = model(wav, lengths, num_views=2)
        single = model(wav, lengths, num_views=1)
    torch.testing.assert_close(twin[:3], single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(twin[3:], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("freeze", [False, True])
def test_text_encoder_builds_no_graph_under_no_grad(sources, tmp_path, freeze):
    encoder = HFTextEncoder(sources["roberta"], str(tmp_path), freeze=freeze)
    ids = torch.tensor([encoder.text_to_ids("hello there")])
    with torch.no_grad():
        assert encoder(ids, torch.ones(1)).grad_fn is None
    # Training a fine-tuned encoder still builds its graph.
    assert (encoder(ids, torch.ones(1)).grad_fn is None) == freeze


@pytest.fixture(scope="module")
def whisper_source(tmp_path_factory):
    from speechbrain_turbo.random_hf_models import save_random_whisper_model

    return save_random_whisper_model(str(tmp_path_factory.mktemp("whisper")))


def test_whisper_30s_mode_is_huggingface_whisper(whisper_source, tmp_path):
    """The 30-s mode reproduces HuggingFace's feature extractor + encoder,
    so the own-length mode differs from Whisper only by the window."""
    import transformers

    from speechbrain_turbo.hf_encoders import HFWhisperEncoder

    encoder = HFWhisperEncoder(whisper_source, str(tmp_path), pad_to_30s=True)
    wavs = torch.randn(2, 16000) * torch.tensor([[0.1], [0.5]])
    wavs[1, 9600:] = 0.0
    ours = encoder.eval()(wavs)
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(
        whisper_source
    )
    features = extractor(
        [wavs[0].numpy(), wavs[1, :9600].numpy()],
        sampling_rate=16000,
        return_tensors="pt",
    ).input_features
    reference = transformers.WhisperModel.from_pretrained(whisper_source)
    with torch.no_grad():
        hidden = reference.encoder.eval()(features).last_hidden_state
    assert ours.shape == (2, 50, 16)
    torch.testing.assert_close(ours, hidden[:, :50], atol=2e-4, rtol=1e-3)


def test_whisper_own_length_agrees_with_the_30s_encoding(
    whisper_source, tmp_path
):
    from speechbrain_turbo.hf_encoders import HFWhisperEncoder

    own = HFWhisperEncoder(whisper_source, str(tmp_path)).eval()
    full = HFWhisperEncoder(whisper_source, str(tmp_path), pad_to_30s=True)
    generator = torch.Generator().manual_seed(0)
    wavs = 0.3 * torch.randn(4, 32000, generator=generator)
    with torch.no_grad():
        short, long = own(wavs), full.eval()(wavs)
    assert short.shape == long.shape == (4, 100, 16)
    # Every frame but the last few sees nearly the same context.
    pooled = torch.nn.functional.cosine_similarity(
        short.mean(1), long.mean(1), dim=-1
    )
    assert pooled.min() > 0.95, pooled
    # Silence appended before encoding brings the two closer still.
    padded = HFWhisperEncoder(
        whisper_source, str(tmp_path), extra_silence_seconds=4.0
    ).eval()
    with torch.no_grad():
        closer = padded(wavs)
    assert closer.shape == short.shape
    assert (closer - long).abs().mean() < (short - long).abs().mean()


def test_whisper_views_differ_by_dropout_and_share_the_front_end(
    whisper_source, tmp_path
):
    from speechbrain_turbo.hf_encoders import HFWhisperEncoder
    from speechbrain_turbo.models import ModalityEncoder

    def branch(dropout, share):
        torch.manual_seed(0)
        return ModalityEncoder(
            HFWhisperEncoder(
                whisper_source,
                str(tmp_path),
                config_overrides={
                    "dropout": dropout,
                    "attention_dropout": dropout,
                    "activation_dropout": dropout,
                },
                share_front_end=share,
            )
        ).train()

    wavs, lengths = torch.randn(3, 8000), torch.tensor([1.0, 0.7, 0.4])
    views = branch(0.2, True)(wavs, lengths, num_views=2)
    first, second = views.chunk(2)
    assert first.shape == (3, 16)
    assert not torch.allclose(first, second)
    whisper = branch(0.2, True).encoder.model
    assert whisper.dropout == whisper.layers[0].activation_dropout == 0.2
    assert whisper.layers[0].self_attn.dropout == 0.2

    # Without dropout the shared front end gives what two full passes give,
    # gradients of the (trainable) convolutions included.
    outputs, grads = [], []
    for share in (True, False):
        model = branch(0.0, share)
        assert model.encoder.shares_run_once == share
        out = model(wavs, lengths, num_views=2)
        out.pow(2).sum().backward()
        grads.append(model.encoder.model.conv1.weight.grad.clone())
        assert torch.equal(*out.chunk(2))
        outputs.append(out.detach())
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_whisper_frozen_front_end_and_too_long_input(whisper_source, tmp_path):
    from speechbrain_turbo.hf_encoders import HFWhisperEncoder

    encoder = HFWhisperEncoder(
        whisper_source, str(tmp_path), freeze_feature_extractor=True
    )
    # Only the encoder is kept.
    assert not any("decoder" in name for name, _ in encoder.named_parameters())
    encoder(torch.randn(1, 4000)).sum().backward()
    assert encoder.model.conv1.weight.grad is None
    assert encoder.model.layers[0].fc1.weight.grad is not None
    with pytest.raises(ValueError, match="at most 30 s"):
        encoder(torch.zeros(1, 16000 * 31))


def test_whisper_first_layers_give_that_layers_hidden_states(
    whisper_source, tmp_path
):
    """num_layers keeps the first layers: the output is HuggingFace's hidden
    state after that layer (no final norm), and the norm is not trained."""
    import transformers

    from speechbrain_turbo.hf_encoders import HFWhisperEncoder

    encoder = HFWhisperEncoder(
        whisper_source, str(tmp_path), pad_to_30s=True, num_layers=1
    ).eval()
    assert len(encoder.model.layers) == 1
    assert not encoder.model.layer_norm.weight.requires_grad
    wavs = 0.3 * torch.randn(2, 16000)
    features = transformers.WhisperFeatureExtractor.from_pretrained(
        whisper_source
    )(list(wavs.numpy()), sampling_rate=16000, return_tensors="pt")
    reference = transformers.WhisperModel.from_pretrained(whisper_source)
    with torch.no_grad():
        hidden = reference.encoder.eval()(
            features.input_features, output_hidden_states=True
        ).hidden_states[1]
        ours = encoder(wavs)
    torch.testing.assert_close(ours, hidden[:, :50], atol=2e-4, rtol=1e-3)
    with pytest.raises(ValueError, match="num_layers must be 1 to 2"):
        HFWhisperEncoder(whisper_source, str(tmp_path), num_layers=3)


def test_whisper_layer_weighted_sum_combines_every_kept_layer(
    whisper_source, tmp_path
):
    import transformers

    from speechbrain_turbo.hf_encoders import HFWhisperEncoder

    encoder = HFWhisperEncoder(
        whisper_source, str(tmp_path), num_layers=1, layer_weighted_sum=True
    ).eval()
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        hidden = encoder(wav)
        # HuggingFace's own layer outputs, on the same own-length input.
        features, _ = encoder.run_once(wav)
        reference = transformers.WhisperModel.from_pretrained(whisper_source)
        first = features + reference.encoder.embed_positions.weight[:25]
        layer = reference.encoder.layers[0](first, None)
        layer = layer[0] if isinstance(layer, tuple) else layer
    expected = (
        F.layer_norm(first, (16,)) + F.layer_norm(layer, (16,))
    ) / 2  # two layers (the input and layer 1), equal weights at the start
    assert hidden.shape == (1, 25, 16)
    assert torch.allclose(hidden, expected, atol=1e-5)
    assert encoder.layer_sum.scores.shape == (2,)


@pytest.mark.parametrize("layer_weighted_sum", [False, True])
def test_whisper_frozen_layers_run_once_for_both_views(
    whisper_source, tmp_path, layer_weighted_sum
):
    """The frozen first layer runs in the front end, without dropout or
    graph: the views share it, differ by the second layer's dropout, and
    the output in evaluation is the unfrozen encoder's."""
    from speechbrain_turbo.hf_encoders import HFWhisperEncoder
    from speechbrain_turbo.models import ModalityEncoder

    def encoder(frozen_layers):
        torch.manual_seed(0)
        return HFWhisperEncoder(
            whisper_source,
            str(tmp_path),
            config_overrides={"dropout": 0.3, "activation_dropout": 0.3},
            layer_weighted_sum=layer_weighted_sum,
            frozen_layers=frozen_layers,
        )

    frozen, full = encoder(1), encoder(0)
    wavs, lengths = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    with torch.no_grad():
        torch.testing.assert_close(
            frozen.eval()(wavs, lengths), full.eval()(wavs, lengths)
        )
    branch = ModalityEncoder(frozen).train()
    assert not frozen.model.layers[0].training
    assert frozen.model.layers[1].training
    shared, _ = frozen.run_once(wavs, lengths)
    assert not shared.requires_grad
    torch.testing.assert_close(shared, frozen.run_once(wavs, lengths)[0])
    first, second = branch(wavs, lengths, num_views=2).chunk(2)
    assert not torch.allclose(first, second)
    (first - second).pow(2).sum().backward()
    assert frozen.model.layers[0].fc1.weight.grad is None
    assert frozen.model.conv1.weight.grad is None
    assert frozen.model.layers[1].fc1.weight.grad is not None
    with pytest.raises(ValueError, match="frozen_layers must be 0 to 2"):
        HFWhisperEncoder(whisper_source, str(tmp_path), frozen_layers=3)


def test_text_frozen_layers_get_no_gradient_and_no_dropout(sources, tmp_path):
    def encoder(frozen_layers):
        torch.manual_seed(0)
        return HFTextEncoder(
            sources["bert"],
            str(tmp_path),
            config_overrides={"hidden_dropout_prob": 0.3},
            frozen_layers=frozen_layers,
        )

    frozen, full = encoder(1), encoder(0)
    ids = torch.tensor([frozen.text_to_ids("hi hi hi")] * 2)
    with torch.no_grad():
        torch.testing.assert_close(frozen.eval()(ids), full.eval()(ids))
    frozen.train()
    assert not frozen.model.embeddings.training
    assert not frozen.model.encoder.layer[0].training
    assert frozen.model.encoder.layer[1].training
    hidden = frozen(ids)
    assert not torch.allclose(hidden[0], hidden[1])  # the upper dropout
    hidden.pow(2).sum().backward()
    assert frozen.model.embeddings.word_embeddings.weight.grad is None
    assert frozen.model.encoder.layer[0].output.dense.weight.grad is None
    assert frozen.model.encoder.layer[1].output.dense.weight.grad is not None
    with pytest.raises(ValueError, match="frozen_layers must be 0 to"):
        encoder(9)
