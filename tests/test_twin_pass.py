"""A recipe with its own Brain trains with Turbo through ``twin_pass`` and
``TurboLoss`` (docs/extend_a_recipe.md)."""

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.nnet.pooling import StatisticsPooling

from speechbrain_turbo.losses import TurboLoss
from speechbrain_turbo.models import ProjectionHead
from speechbrain_turbo.twin_pass import twin_pass


class EmotionBrain(sb.Brain):
    """An emotion recipe's Brain (encoder, pooling, classifier), with the
    twin pass and the Turbo term added as in docs/extend_a_recipe.md."""

    def embed(self, feats, lens):
        hidden = self.modules.encoder(feats)
        return self.hparams.pooling(hidden, lens).flatten(1)

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        feats, lens = batch.feats
        if stage == sb.Stage.TRAIN:
            first, second = twin_pass(self.embed, feats, lens)
            self.views = {
                "audio": (
                    self.modules.projection(first),
                    self.modules.projection(second),
                )
            }
            pooled = torch.cat([first, second])
        else:
            pooled = self.embed(feats, lens)
        return self.modules.classifier(pooled).log_softmax(-1)

    def compute_objectives(self, predictions, batch, stage):
        labels = batch.label
        if stage != sb.Stage.TRAIN:
            return torch.nn.functional.nll_loss(predictions, labels)
        ce = torch.nn.functional.nll_loss(predictions, labels.repeat(2))
        turbo = self.hparams.turbo_loss(self.views, labels=labels)["loss"]
        self.turbo_terms.append(float(turbo))
        return ce + self.hparams.turbo_weight * turbo


def make_data():
    generator = torch.Generator().manual_seed(0)
    items = {}
    for i in range(24):
        label = i % 3
        frames = 6 + i % 5
        feats = torch.randn(frames, 8, generator=generator) + label
        items[f"utt{i}"] = {"feats": feats, "label": label}
    data = DynamicItemDataset(items)
    data.set_output_keys(["id", "feats", "label"])
    return data


def make_brain():
    torch.manual_seed(0)
    modules = {
        "encoder": torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2)
        ),
        "projection": ProjectionHead(32, 16, 8),
        "classifier": torch.nn.Linear(32, 3),
    }
    brain = EmotionBrain(
        modules=modules,
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-2),
        hparams={
            "pooling": StatisticsPooling(),
            "turbo_loss": TurboLoss(temperature=0.1, label_aware=True),
            "turbo_weight": 0.5,
        },
        run_opts={"device": "cpu"},
    )
    brain.turbo_terms = []
    return brain


def test_own_brain_trains_with_twin_pass_and_turbo_loss():
    brain = make_brain()
    data = make_data()
    before = {k: v.clone() for k, v in brain.modules.state_dict().items()}
    brain.fit(range(3), data, data, train_loader_kwargs={"batch_size": 8})
    assert len(brain.turbo_terms) == 3 * 3  # every training step
    assert all(torch.isfinite(torch.tensor(brain.turbo_terms)))
    # The Turbo term trains the projection head (only it reads it).
    changed = [
        k
        for k, v in brain.modules.state_dict().items()
        if not torch.equal(v, before[k])
    ]
    assert any(k.startswith("projection") for k in changed)
    # The objective is learnable: the term falls over training.
    assert brain.turbo_terms[-1] < brain.turbo_terms[0]


def test_twin_pass_views_differ_only_by_dropout():
    encoder = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Dropout(0.5))
    x = torch.randn(5, 4)
    first, second = twin_pass(encoder, x)
    assert first.shape == second.shape == (5, 6)
    assert not torch.equal(first, second)
    encoder.eval()
    first, second = twin_pass(encoder, x)
    assert torch.equal(first, second)


def test_twin_pass_splits_every_output_and_passes_non_tensors():
    def module(x, lengths, scale, offset=0.0):
        return x * scale + offset, lengths

    x, lengths = torch.randn(3, 2), torch.ones(3)
    (a1, a2), (l1, l2) = twin_pass(module, x, lengths, 2.0, offset=1.0)
    assert torch.equal(a1, x * 2 + 1) and torch.equal(a2, x * 2 + 1)
    assert torch.equal(l1, lengths) and torch.equal(l2, lengths)


def test_a_module_that_drops_the_batch_axis_is_refused():
    with pytest.raises(ValueError, match="batch axis first"):
        twin_pass(lambda x: x.sum(0, keepdim=True), torch.randn(3, 2))


def test_sequential_twin_pass_runs_the_module_twice_on_the_same_inputs():
    calls = []

    def module(x, lengths):
        calls.append(x.shape[0])
        noise = torch.nn.functional.dropout(torch.ones_like(x), 0.5)
        return x * noise, lengths

    x, lengths = torch.randn(3, 4), torch.ones(3)
    (first, second), (len1, len2) = twin_pass(
        module, x, lengths, sequential=True
    )
    assert calls == [3, 3]
    assert first.shape == second.shape == (3, 4)
    assert not torch.equal(first, second)
    assert torch.equal(len1, lengths) and torch.equal(len2, lengths)
