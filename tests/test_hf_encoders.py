"""Pretrained HF encoder wrappers: dropout overrides, padding, tokenizer."""

import pytest
import torch

from speechbrain_turbo.hf_encoders import HFSpeechEncoder, HFTextEncoder
from speechbrain_turbo.random_hf_models import (
    save_random_speech_model,
    save_random_text_model,
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {
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
            "layerdrop": 0.0,
        },
    )
    assert encoder.model.config.hidden_dropout == 0.25
    assert dropout_rates(encoder.model) == {0.25}
    # The frozen CNN needs no gradient, not even for its input.
    assert not any(
        p.requires_grad for p in encoder.model.feature_extractor.parameters()
    )
    assert not encoder.model.feature_extractor._requires_grad


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
