"""ModalityEncoder with SpeechBrain's ECAPA-TDNN and feature augmentation;
the fusion with and without cross-modal interactions; the training crop."""

import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_turbo.models import ModalityEncoder, ModalityFusion, RandomCrop


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
        fusion = ModalityFusion(
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


def test_random_crop_keeps_a_window_of_each_row_and_short_rows_whole():
    torch.manual_seed(0)
    sample_rate, total = 10, 60
    real = torch.tensor([60, 45, 20, 3])
    wavs = torch.zeros(4, total)
    for row, n in enumerate(real.tolist()):
        wavs[row, :n] = torch.arange(1, n + 1) + 100 * row
    crop = RandomCrop(max_seconds=2.5, sample_rate=sample_rate)
    offsets = set()
    for _ in range(20):
        cropped, lengths = crop(wavs, real / total)
        assert cropped.shape == (4, 25)
        kept = (lengths * 25).round().long()
        assert kept.tolist() == [25, 25, 20, 3]
        for row, n in enumerate(kept.tolist()):
            window = cropped[row, :n]
            start = int(window[0]) - 100 * row - 1
            # A contiguous window inside the row's own samples, then zeros.
            expected = torch.arange(start + 1, start + n + 1) + 100 * row
            assert torch.equal(window, expected.float())
            assert start + n <= real[row]
            assert not cropped[row, n:].any()
            if row == 0:
                offsets.add(start)
        # Rows no longer than the crop are kept whole, from their start.
        assert cropped[2, 0] == 201 and cropped[3, 0] == 301
    assert len(offsets) > 5  # the window moves
    # A batch already short enough is returned as it is.
    short, same = crop(wavs[:, :20], torch.ones(4))
    assert short.shape == (4, 20) and torch.equal(same, torch.ones(4))


def test_fusion_standardises_each_modality_on_the_classifiers_path_only():
    fusion = ModalityFusion(
        {"audio": 4, "text": 3}, ["audio", "text"], 5, standardise=True
    ).train()
    audio = 10 + 0.1 * torch.randn(8, 4)  # large offset, small spread
    text = torch.randn(8, 3)
    captured = []
    fusion.mlp.register_forward_hook(lambda m, i, o: captured.append(i[0]))
    fusion({"audio": audio, "text": text})
    fused_input = captured[0]
    standardised = (audio - audio.mean(0)) / audio.var(0, False).add(
        1e-5
    ).sqrt()
    assert torch.allclose(fused_input[:, :4], standardised, atol=1e-4)
    # The caller's embeddings (the projection heads' input) are untouched.
    assert audio.mean() > 9
    # A missing modality still gets the "absent" embedding, not normalised.
    captured.clear()
    fusion.eval()({"audio": audio})
    assert torch.equal(captured[0][:, 4:], torch.zeros(8, 3))
