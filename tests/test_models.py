"""ModalityEncoder with SpeechBrain's ECAPA-TDNN and feature augmentation."""

import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_turbo.models import ModalityEncoder


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
