"""ModalityEncoder with SpeechBrain's ECAPA-TDNN and feature augmentation;
the fusion with and without cross-modal interactions."""

import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_turbo.models import ConcatFusion, ModalityEncoder


class RecordingMask(torch.nn.Module):
    """Zeroes a random half of the frames of each row; records the rows."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def forward(self, features):
        self.rows.append(features.shape[0])
        keep = torch.rand(features.shape[0], features.shape[1], 1) > 0.5
        return features * keep


def ecapa_encoder(dropout, augment=None):
    torch.manual_seed(0)
    ecapa = ECAPA_TDNN(
        input_size=8,
        channels=[16, 16, 16, 16, 48],
        attention_channels=8,
        lin_neurons=12,
        res2net_scale=4,
        se_channels=8,
        dropout=dropout,
    )
    return ModalityEncoder(ecapa, pooling=torch.nn.Identity(), augment=augment)


def test_ecapa_channel_dropout_gives_two_views_in_one_forward():
    encoder = ecapa_encoder(dropout=0.2).train()
    x, lengths = torch.randn(3, 40, 8), torch.tensor([1.0, 0.7, 0.5])
    views = encoder(x, lengths, num_views=2)
    assert views.shape == (6, 12)
    assert not torch.allclose(views[:3], views[3:])
    # Without dropout the two copies are the same rows.
    encoder = ecapa_encoder(dropout=0.0).train()
    views = encoder(x, lengths, num_views=2)
    torch.testing.assert_close(views[:3], views[3:])


def test_feature_augment_runs_once_per_batch_and_only_in_training():
    mask = RecordingMask()
    encoder = ecapa_encoder(dropout=0.0, augment=mask).train()
    x, lengths = torch.randn(3, 40, 8), torch.ones(3)
    views = encoder(x, lengths, num_views=2)
    # One mask for the batch, shared by both views.
    assert mask.rows == [3]
    torch.testing.assert_close(views[:3], views[3:])
    encoder.eval()
    with torch.no_grad():
        clean = encoder(x, lengths)
        assert mask.rows == [3]
        torch.testing.assert_close(clean, encoder(x, lengths))


def test_fusion_without_interactions_adds_per_modality_logits():
    """Without interactions, changing the text shifts every audio input's
    logits by the same amount (late fusion); with them it does not. Both
    kinds learn the "absent" embeddings under modality dropout."""
    torch.manual_seed(0)
    classifier = torch.nn.Linear(12, 4)
    audio = torch.randn(2, 16)
    texts = torch.randn(2, 8)

    def text_effect(fusion, row):
        """How the logits of one audio row move from text 0 to text 1."""
        logits = [
            classifier(fusion({"audio": audio[row : row + 1], "text": t}))
            for t in (texts[:1], texts[1:])
        ]
        return logits[1] - logits[0]

    for interactions in (False, True):
        fusion = ConcatFusion(
            {"audio": 16, "text": 8},
            ["audio", "text"],
            12,
            modality_dropout=0.3,
            interactions=interactions,
        )
        effects = [text_effect(fusion.eval(), row) for row in (0, 1)]
        assert torch.allclose(*effects, atol=1e-6) != interactions
        fusion.train()
        rows = {"audio": audio.repeat(50, 1), "text": texts.repeat(50, 1)}
        fusion(rows).sum().backward()
        assert fusion.absent["text"].grad.abs().sum() > 0
