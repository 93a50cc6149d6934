"""TurboBrain: the twin pass, the objective and the baseline switch."""

import json
import logging
import math

import pytest
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.augment.freq_domain import SpectrogramDrop
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.embedding import Embedding
from speechbrain.nnet.linear import Linear
from test_losses import reference_turbo

from speechbrain_turbo.brain import TurboBrain
from speechbrain_turbo.dataio import transcript_group_ids
from speechbrain_turbo.losses import TurboLoss
from speechbrain_turbo.metrics import alignment, uniformity
from speechbrain_turbo.models import (
    ConvEncoder,
    ModalityEncoder,
    ModalityFusion,
    ProjectionHead,
    WeightedLayerSum,
)

NUM_CLASSES = 3


def make_brain(dropout=0.3, turbo_weight=0.5, twin_pass=True, **hparams):
    torch.manual_seed(0)
    modules = {
        "audio_encoder": ModalityEncoder(
            ConvEncoder(input_size=6, channels=[8], dropout=dropout)
        ),
        "text_encoder": ModalityEncoder(
            ConvEncoder(input_size=5, channels=[8], dropout=dropout),
            frontend=Embedding(num_embeddings=20, embedding_dim=5),
        ),
        "audio_projection": ProjectionHead(8, 8, 4),
        "text_projection": ProjectionHead(8, 8, 4),
        "fusion": ModalityFusion(
            {"audio": 8, "text": 8},
            hparams.get("modalities", ["audio", "text"]),
            hidden_size=8,
            dropout=dropout,
            modality_dropout=hparams.pop("modality_dropout", 0.0),
        ),
        "classifier": Linear(input_size=8, n_neurons=NUM_CLASSES),
        "turbo_loss": TurboLoss(temperature=0.1),
    }
    hparams = {
        "modalities": ["audio", "text"],
        "turbo_weight": turbo_weight,
        "twin_pass": twin_pass,
        **hparams,
    }
    return TurboBrain(
        modules=modules,
        opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
        hparams=hparams,
        run_opts={"device": "cpu"},
    )


def make_batch(batch_size=4):
    generator = torch.Generator().manual_seed(1)
    transcripts = ["hello there", "go away", "hello there", "fine"]
    return PaddedBatch(
        [
            {
                "id": f"utt{i}",
                "audio": torch.randn(10 + i, 6, generator=generator),
                "token_ids": torch.randint(
                    1, 20, (3 + i,), generator=generator
                ),
                "transcript": transcripts[i % 4],
                "label": torch.LongTensor([i % NUM_CLASSES]),
            }
            for i in range(batch_size)
        ]
    )


def count_forward_rows(module):
    """Records the batch size of each forward call of ``module``."""
    rows = []
    module.register_forward_hook(lambda m, args, out: rows.append(len(out)))
    return rows


def test_twin_pass_is_one_forward_over_the_doubled_batch():
    brain = make_brain()
    brain.modules.train()
    rows = count_forward_rows(brain.modules.audio_encoder)
    out = brain.compute_forward(make_batch(), sb.Stage.TRAIN)
    assert rows == [8]
    assert out["logits"].shape == (8, NUM_CLASSES)
    first, second = out["views"]["audio"]
    assert first.shape == second.shape == (4, 4)
    assert not torch.allclose(first, second)
    assert not torch.allclose(out["logits"][:4], out["logits"][4:])


def test_sequential_twin_pass_runs_the_front_end_once_and_the_encoder_twice():
    brain = make_brain(sequential_views=True)
    brain.modules.train()
    front_end_rows = count_forward_rows(brain.modules.text_encoder.frontend)
    encoder_rows = count_forward_rows(brain.modules.text_encoder.encoder)
    out = brain.compute_forward(make_batch(), sb.Stage.TRAIN)
    assert front_end_rows == [4]
    assert encoder_rows == [4, 4]
    assert out["logits"].shape == (8, NUM_CLASSES)
    first, second = out["views"]["text"]
    assert not torch.allclose(first, second)


def with_feature_masking(brain):
    """Gives the audio branch SpecAugment-style time masking (random per
    call, in training only), as the EmoDB recipe does."""
    brain.modules.audio_encoder.augment = SpectrogramDrop(
        drop_length_low=2, drop_length_high=4, drop_count_low=1, dim=1
    )
    return brain


@pytest.mark.parametrize("sequential_views", [False, True])
def test_feature_augmentation_is_drawn_once_for_both_views(
    caplog, sequential_views
):
    """Without dropout the two views are identical (and the Brain warns)
    even with feature masking: it runs once, before the views are drawn."""
    brain = with_feature_masking(
        make_brain(dropout=0.0, sequential_views=sequential_views)
    )
    brain.modules.train()
    batch = make_batch()
    augment_calls = count_forward_rows(brain.modules.audio_encoder.augment)
    with caplog.at_level(logging.WARNING):
        out = brain.compute_forward(batch, sb.Stage.TRAIN)
        brain.on_stage_start(sb.Stage.TRAIN)
        brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    assert augment_calls == [4]
    for first, second in out["views"].values():
        assert torch.equal(first, second)
    assert "views of modality 'audio' are identical" in caplog.text


def training_losses(sequential_views, draws):
    """The training loss of one batch under ``draws`` dropout draws, with
    the weights fixed (no step) and feature masking on."""
    brain = with_feature_masking(make_brain(sequential_views=sequential_views))
    brain.modules.train()
    batch = make_batch(batch_size=8)
    brain.on_stage_start(sb.Stage.TRAIN)
    torch.manual_seed(5)
    with torch.no_grad():
        return torch.tensor(
            [
                float(
                    brain.compute_objectives(
                        brain.compute_forward(batch, sb.Stage.TRAIN),
                        batch,
                        sb.Stage.TRAIN,
                    )
                )
                for _ in range(draws)
            ]
        )


def test_one_forward_and_sequential_twin_pass_give_the_same_loss_on_average():
    """The two modes draw the views differently (one 2B-row forward or two
    B-row forwards) but from the same distribution: their mean losses agree
    within sampling error (Welch's z below 4)."""
    draws = 150
    doubled, sequential = (
        training_losses(sequential, draws) for sequential in (False, True)
    )
    spread = (doubled.var() / draws + sequential.var() / draws).sqrt()
    assert doubled.std() > 0 and sequential.std() > 0
    assert abs(doubled.mean() - sequential.mean()) < 4 * spread


@pytest.mark.parametrize("sequential_views", [False, True])
def test_turbo_term_trains_the_encoders_not_only_the_heads(sequential_views):
    brain = make_brain(sequential_views=sequential_views)
    brain.modules.train()
    out = brain.compute_forward(make_batch(), sb.Stage.TRAIN)
    brain.modules.turbo_loss(out["views"])["loss"].backward()
    for m in ("audio", "text"):
        encoder = brain.modules[f"{m}_encoder"]
        grads = [p.grad for p in encoder.parameters() if p.requires_grad]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    # The classifier is not in the Turbo term's graph.
    assert all(p.grad is None for p in brain.modules.classifier.parameters())


def test_evaluate_runs_every_module_with_dropout_off(tmp_path):
    brain = make_brain(
        output_folder=str(tmp_path),
        label_encoder=make_label_encoder(),
        epoch_counter=sb.utils.epoch_loop.EpochCounter(1),
        train_logger=sb.utils.train_logger.FileTrainLogger(
            str(tmp_path / "log.txt")
        ),
    )
    brain.modules.train()  # as after a training epoch
    modes = []
    for module in brain.modules.modules():
        if isinstance(module, torch.nn.Dropout):
            module.register_forward_hook(
                lambda m, args, out: modes.append(m.training)
            )
    logits = []
    brain.modules.classifier.register_forward_hook(
        lambda m, args, out: logits.append(out.detach())
    )
    loader = torch.utils.data.DataLoader(
        [make_batch()], batch_size=None, collate_fn=lambda batch: batch
    )
    brain.evaluate(loader)
    brain.evaluate(loader)
    assert modes and not any(modes)
    assert [x.shape[0] for x in logits] == [4, 4]
    assert torch.equal(logits[0], logits[1])


def test_views_agree_without_dropout_and_brain_warns_once(caplog):
    brain = make_brain(dropout=0.0)
    brain.modules.train()
    batch = make_batch()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            out = brain.compute_forward(batch, sb.Stage.TRAIN)
            brain.on_stage_start(sb.Stage.TRAIN)
            brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    for first, second in out["views"].values():
        assert torch.equal(first, second)
    warnings = [r for r in caplog.records if "identical" in r.getMessage()]
    assert len(warnings) == 2  # once per modality, not once per step
    assert {"'audio'" in w.getMessage() for w in warnings} == {True, False}


@pytest.mark.parametrize("stage", [sb.Stage.VALID, sb.Stage.TEST])
def test_evaluation_is_a_single_deterministic_pass(stage):
    brain = make_brain()
    brain.modules.eval()
    rows = count_forward_rows(brain.modules.audio_encoder)
    batch = make_batch()
    with torch.no_grad():
        out = brain.compute_forward(batch, stage)
        again = brain.compute_forward(batch, stage)
    assert rows == [4, 4]
    assert out["logits"].shape == (4, NUM_CLASSES)
    assert torch.equal(out["logits"], again["logits"])
    # One projected view per modality, for the representation analysis.
    assert [v.shape for (v,) in out["views"].values()] == [(4, 4), (4, 4)]


def test_training_loss_is_mean_ce_plus_weighted_turbo():
    brain = make_brain(turbo_weight=0.5)
    brain.modules.train()
    batch = make_batch()
    brain.on_stage_start(sb.Stage.TRAIN)
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    labels = batch.label.data.reshape(-1)
    ce = (
        F.cross_entropy(out["logits"][:4], labels)
        + F.cross_entropy(out["logits"][4:], labels)
    ) / 2
    # The definition, computed independently of the brain's TurboLoss.
    views = {
        m: tuple(v.detach() for v in pair) for m, pair in out["views"].items()
    }
    turbo = reference_turbo(
        views,
        temperature=0.1,
        w_in=1.0,
        w_cross=1.0,
        labels=None,
        groups=transcript_group_ids(batch.transcript).tolist(),
    )["loss"]
    expected = float(ce) + 0.5 * turbo
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    brain.on_stage_end(sb.Stage.TRAIN, float(loss))
    assert set(brain.train_stats) >= {"CE", "in_modal", "cross_modal", "total"}


def test_repeated_transcripts_are_masked_by_default():
    batch = make_batch()
    masked, unmasked = [], []
    for flag, losses in ((True, masked), (False, unmasked)):
        brain = make_brain(mask_repeated_transcripts=flag)
        brain.modules.train()
        seen = []
        brain.modules.turbo_loss.register_forward_hook(
            lambda m, args, kwargs, out, seen=seen: seen.append(
                kwargs["groups"]
            ),
            with_kwargs=True,
        )
        brain.on_stage_start(sb.Stage.TRAIN)
        out = brain.compute_forward(batch, sb.Stage.TRAIN)
        losses.append(brain.compute_objectives(out, batch, sb.Stage.TRAIN))
        if flag:
            groups = seen[0]
            assert groups[0] == groups[2] and groups[0] != groups[1]
        else:
            assert seen[0] is None
    assert float(masked[0]) != float(unmasked[0])


def test_baseline_switch_removes_twin_pass_and_contrastive_term():
    brain = make_brain(turbo_weight=0, twin_pass=False)
    brain.modules.train()

    def fail(*args, **kwargs):
        raise AssertionError("the contrastive term ran in the baseline")

    brain.modules.turbo_loss.forward = fail
    rows = count_forward_rows(brain.modules.audio_encoder)
    batch = make_batch()
    brain.on_stage_start(sb.Stage.TRAIN)
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    assert rows == [4]
    assert out["views"] is None
    ce = F.cross_entropy(out["logits"], batch.label.data.reshape(-1))
    assert float(loss) == pytest.approx(float(ce))


def test_twin_pass_without_contrastive_term():
    brain = make_brain(turbo_weight=0, twin_pass=True)
    brain.modules.train()
    out = brain.compute_forward(make_batch(), sb.Stage.TRAIN)
    assert out["logits"].shape == (8, NUM_CLASSES)
    assert out["views"] is None


def test_inconsistent_configurations_fail_early():
    with pytest.raises(ValueError, match="needs two views"):
        make_brain(turbo_weight=1.0, twin_pass=False)
    with pytest.raises(ValueError, match="twin_pass must be"):
        make_brain(twin_pass="twice")
    with pytest.raises(ValueError, match="video"):
        make_brain(modalities=["audio", "video"])


def test_alignment_and_uniformity_are_logged():
    brain = make_brain()
    batch = make_batch()
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN)
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    brain.on_stage_end(sb.Stage.TRAIN, 0.0)
    assert 0 < brain.train_stats["align_audio"] <= 4
    assert 0 < brain.train_stats["align_text"] <= 4

    brain.modules.eval()
    brain.on_stage_start(sb.Stage.VALID)
    with torch.no_grad():
        out = brain.compute_forward(batch, sb.Stage.VALID)
        brain.compute_objectives(out, batch, sb.Stage.VALID)
    brain.hparams.label_encoder = list(range(NUM_CLASSES))
    stats = brain._evaluation_stats(0.0)
    audio, text = (out["views"][m][0] for m in ("audio", "text"))
    assert stats["align_audio_text"] == pytest.approx(
        alignment(audio, text), abs=1e-6
    )
    assert stats["unif_audio"] == pytest.approx(uniformity(audio), abs=1e-6)
    assert stats["unif_text"] < 0


def test_baseline_logs_no_representation_stats():
    brain = make_brain(turbo_weight=0, twin_pass=False)
    brain.modules.eval()
    brain.on_stage_start(sb.Stage.VALID)
    batch = make_batch()
    with torch.no_grad():
        out = brain.compute_forward(batch, sb.Stage.VALID)
        brain.compute_objectives(out, batch, sb.Stage.VALID)
    assert out["views"] is None
    brain.hparams.label_encoder = list(range(NUM_CLASSES))
    assert not any(
        k.startswith(("align", "unif")) for k in brain._evaluation_stats(0.0)
    )


def test_encoder_opt_class_gives_encoders_their_own_optimizer():
    brain = make_brain(
        encoder_opt_class=lambda params: torch.optim.AdamW(params, lr=1e-5)
    )
    brain.init_optimizers()
    assert set(brain.optimizers_dict) == {"heads", "encoders"}
    encoder_ids = {
        id(p)
        for name in ("audio_encoder", "text_encoder")
        for p in brain.modules[name].parameters()
    }
    (encoder_group,) = brain.encoder_optimizer.param_groups
    (head_group,) = brain.optimizer.param_groups
    assert {id(p) for p in encoder_group["params"]} == encoder_ids
    assert encoder_group["lr"] == 1e-5 and head_group["lr"] == 0.1
    head_ids = {id(p) for p in head_group["params"]}
    assert not head_ids & encoder_ids
    trainable = {id(p) for p in brain.modules.parameters() if p.requires_grad}
    assert head_ids | encoder_ids == trainable


def test_frozen_encoders_leave_only_the_heads_optimizer():
    brain = make_brain(encoder_opt_class=torch.optim.AdamW)
    for name in ("audio_encoder", "text_encoder"):
        brain.modules[name].requires_grad_(False)
    brain.init_optimizers()
    assert set(brain.optimizers_dict) == {"heads"}


def test_each_optimizer_follows_its_own_epoch_schedule():
    schedule = sb.nnet.schedulers.LinearScheduler
    brain = make_brain(
        encoder_opt_class=lambda params: torch.optim.AdamW(params, lr=1e-5),
        lr_annealing=schedule(0.1, 0.01, 2),
        encoder_lr_annealing=schedule(1e-5, 1e-6, 2),
    )
    brain.init_optimizers()
    assert brain._anneal_learning_rates(1) == {"lr": 0.1, "encoder_lr": 1e-5}
    assert brain.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    assert brain.encoder_optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)


def nan_batch(batch_size=4, bad_row=1):
    batch = make_batch(batch_size)
    batch.audio.data[bad_row] = float("nan")
    return batch


def parameters_of(brain):
    return [p.detach().clone() for p in brain.modules.parameters()]


def test_non_finite_loss_skips_the_step_and_is_counted(caplog):
    brain = make_brain()
    brain.init_optimizers()
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN)
    before = parameters_of(brain)
    with caplog.at_level(logging.WARNING):
        loss = brain.fit_batch(nan_batch())
    assert not torch.isfinite(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, parameters_of(brain)))
    assert all(p.grad is None for p in brain.modules.parameters())
    assert "step skipped" in caplog.text and "utt1" in caplog.text

    assert torch.isfinite(brain.fit_batch(make_batch()))
    assert brain.consecutive_skipped == 0
    assert not all(
        torch.equal(a, b) for a, b in zip(before, parameters_of(brain))
    )
    brain.on_stage_end(sb.Stage.TRAIN, 0.0)
    assert brain.train_stats["skipped_steps"] == 1
    # The skipped step is not in the epoch's averages.
    assert all(
        torch.isfinite(torch.tensor(v)) for v in brain.train_stats.values()
    )


def test_training_stops_after_patience_consecutive_non_finite_steps():
    brain = make_brain()
    brain.init_optimizers()
    brain.on_stage_start(sb.Stage.TRAIN)
    for _ in range(brain.nonfinite_patience):
        brain.fit_batch(nan_batch())
    with pytest.raises(RuntimeError) as error:
        brain.fit_batch(nan_batch())
    message = str(error.value)
    assert f"{brain.nonfinite_patience + 1} training steps in a row" in message
    assert "utt0, utt1, utt2, utt3" in message
    assert "--nonfinite_patience" in message


def test_a_non_finite_loss_skips_its_accumulation_window():
    brain = make_brain()
    brain.grad_accumulation_factor = 2
    brain.init_optimizers()
    brain.on_stage_start(sb.Stage.TRAIN)
    before = parameters_of(brain)
    for step, batch in ((1, nan_batch()), (2, make_batch())):
        brain.step = step
        brain.fit_batch(batch)
    # The finite second half of the window is not stepped on its own.
    assert all(torch.equal(a, b) for a, b in zip(before, parameters_of(brain)))
    assert all(p.grad is None for p in brain.modules.parameters())
    assert brain.skipped_steps == 1 and brain.consecutive_skipped == 0
    for step in (3, 4):
        brain.step = step
        brain.fit_batch(make_batch())
    assert not all(
        torch.equal(a, b) for a, b in zip(before, parameters_of(brain))
    )


def test_modality_dropout_replaces_one_modality_of_some_rows():
    torch.manual_seed(0)
    fusion = ModalityFusion(
        {"audio": 3, "text": 2}, ["audio", "text"], 4, modality_dropout=0.3
    )
    with torch.no_grad():
        fusion.absent["audio"].fill_(-7.0)
        fusion.absent["text"].fill_(-9.0)
    audio, text = torch.ones(2000, 3), torch.ones(2000, 2)
    fusion.train()
    parts = fusion._drop_modalities([audio, text])
    audio_gone = (parts[0] == -7.0).all(-1)
    text_gone = (parts[1] == -9.0).all(-1)
    assert not (audio_gone & text_gone).any()
    assert 0.25 < (audio_gone | text_gone).float().mean() < 0.35
    assert 0.4 < audio_gone.float().sum() / (audio_gone | text_gone).sum() < 0.6
    # Evaluation never drops; a missing modality gets the absent vector.
    fusion.eval()
    absent_text = fusion.absent["text"].expand(2, -1)
    expected = fusion({"audio": audio[:2], "text": absent_text})
    torch.testing.assert_close(fusion({"audio": audio[:2]}), expected)


@pytest.mark.parametrize("modality_dropout", [0.0, 0.3])
def test_evaluate_without_text_never_runs_the_text_encoder(
    tmp_path, caplog, modality_dropout
):
    brain = make_brain(
        modality_dropout=modality_dropout,
        output_folder=str(tmp_path),
        label_encoder=make_label_encoder(),
        epoch_counter=sb.utils.epoch_loop.EpochCounter(1),
        train_logger=sb.utils.train_logger.FileTrainLogger(
            str(tmp_path / "log.txt")
        ),
    )
    text_rows = count_forward_rows(brain.modules.text_encoder)
    audio_rows = count_forward_rows(brain.modules.audio_encoder)
    loader = torch.utils.data.DataLoader(
        [make_batch()], batch_size=None, collate_fn=lambda batch: batch
    )
    with caplog.at_level(logging.WARNING):
        brain.evaluate_without(["text"], loader)
    untrained = "untrained zero placeholder" in caplog.text
    assert untrained == (modality_dropout == 0)
    assert text_rows == [] and audio_rows == [4]
    report = json.loads(
        (tmp_path / "test_metrics_without_text.json").read_text()
    )
    assert report["without"] == ["text"]
    assert (tmp_path / "test_confusion_without_text.png").exists()
    assert "without: text" in (tmp_path / "log.txt").read_text()
    with pytest.raises(ValueError, match="one must remain"):
        brain.evaluate_without(["audio", "text"], loader)


def make_label_encoder():
    encoder = sb.dataio.encoder.CategoricalEncoder()
    encoder.update_from_iterable(["a", "b", "c"])
    return encoder


class RecordingAugment(torch.nn.Module):
    """A waveform augmentation that adds a fresh random offset per row and
    records the batch sizes it saw."""

    def __init__(self, change_rows=False):
        super().__init__()
        self.rows = []
        self.change_rows = change_rows

    def forward(self, wavs, lengths):
        self.rows.append(wavs.shape[0])
        if self.change_rows:
            return torch.cat([wavs, wavs]), torch.cat([lengths, lengths])
        return wavs + torch.randn(wavs.shape[0], 1, 1), lengths


def test_wav_augment_runs_once_before_the_batch_is_doubled():
    augment = RecordingAugment()
    brain = make_brain(dropout=0.0, wav_augment=augment)
    brain.modules.train()
    out = brain.compute_forward(make_batch(), sb.Stage.TRAIN)
    assert augment.rows == [4]
    # Without dropout the two views are equal: both saw the same augmented
    # audio (an augmentation per view would make them differ).
    first, second = out["views"]["audio"]
    torch.testing.assert_close(first, second)
    # And the audio was augmented: the views differ from the clean pass.
    brain.hparams.wav_augment = None
    clean = brain.compute_forward(make_batch(), sb.Stage.TRAIN)
    assert not torch.allclose(clean["views"]["audio"][0], first)


def test_wav_augment_is_not_applied_in_evaluation():
    augment = RecordingAugment()
    brain = make_brain(wav_augment=augment)
    brain.modules.eval()
    with torch.no_grad():
        for stage in (sb.Stage.VALID, sb.Stage.TEST):
            brain.compute_forward(make_batch(), stage)
    assert augment.rows == []


def test_wav_augment_that_changes_the_batch_size_is_refused():
    brain = make_brain(wav_augment=RecordingAugment(change_rows=True))
    brain.modules.train()
    with pytest.raises(ValueError, match="concat_original"):
        brain.compute_forward(make_batch(), sb.Stage.TRAIN)


def test_consistency_term_is_the_symmetric_kl_of_the_two_views():
    brain = make_brain(turbo_weight=0.0, consistency_weight=2.0)
    brain.modules.train()
    batch = make_batch()
    brain.on_stage_start(sb.Stage.TRAIN)
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    labels = batch.label.data.reshape(-1)
    first, second = out["logits"][:4], out["logits"][4:]
    ce = (F.cross_entropy(first, labels) + F.cross_entropy(second, labels)) / 2
    p, q = first.softmax(-1), second.softmax(-1)
    kl_pq = (p * (p.log() - q.log())).sum(-1).mean()
    kl_qp = (q * (q.log() - p.log())).sum(-1).mean()
    expected = ce + 2.0 * (kl_pq + kl_qp) / 2
    assert float(kl_pq) > 0
    assert loss.item() == pytest.approx(float(expected), abs=1e-6)
    brain.on_stage_end(sb.Stage.TRAIN, float(loss))
    assert "consistency" in brain.train_stats


def test_consistency_needs_the_twin_pass():
    with pytest.raises(ValueError, match="consistency_weight"):
        make_brain(turbo_weight=0.0, twin_pass=False, consistency_weight=1.0)


def test_turbo_weight_warms_up_linearly():
    counter = sb.utils.epoch_loop.EpochCounter(limit=10)
    brain = make_brain(
        turbo_weight=0.4, turbo_warmup_epochs=4, epoch_counter=counter
    )
    weights = []
    for _ in range(6):
        next(counter)
        weights.append(brain._scheduled_turbo_weight())
    assert weights == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    # The scheduled weight is the one in the loss.
    brain.modules.train()
    batch = make_batch()
    brain.on_stage_start(sb.Stage.TRAIN)
    counter.current = 1
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    ce = brain.train_sums["CE"]
    turbo = brain.modules.turbo_loss(
        out["views"], groups=transcript_group_ids(batch.transcript)
    )["loss"]
    assert loss.item() == pytest.approx(float(ce + 0.1 * turbo), abs=1e-6)


def learned_temperature_brain(**hparams):
    brain = make_brain(**hparams)
    brain.modules.turbo_loss = TurboLoss(
        temperature=0.1, learn_temperature=True
    )
    return brain


def weight_decay_of(optimizers):
    """id(param) -> its group's weight decay, over all the optimizers."""
    return {
        id(p): group.get("weight_decay", "default")
        for opt in optimizers
        for group in opt.param_groups
        for p in group["params"]
    }


@pytest.mark.parametrize("two_optimizers", [False, True])
@pytest.mark.parametrize("vectors_free", [False, True])
def test_weight_decay_spares_the_temperature_and_on_request_vectors(
    two_optimizers, vectors_free
):
    extra = {"remove_vector_weight_decay": vectors_free}
    if two_optimizers:
        extra["encoder_opt_class"] = lambda groups: torch.optim.AdamW(
            groups, lr=1e-5, weight_decay=0.5
        )
    brain = learned_temperature_brain(**extra)
    brain.opt_class = lambda groups: torch.optim.AdamW(
        groups, lr=0.1, weight_decay=0.5
    )
    brain.init_optimizers()
    optimizers = list(brain.optimizers_dict.values())
    assert len(optimizers) == (2 if two_optimizers else 1)
    decay = weight_decay_of(optimizers)
    temperature = brain.modules.turbo_loss.log_inverse_temperature
    assert decay[id(temperature)] == 0.0
    for name, param in brain.modules.named_parameters():
        if not param.requires_grad:
            assert id(param) not in decay, name
        elif param.dim() >= 2:
            assert decay[id(param)] == 0.5, name
        elif param.dim() == 1:
            assert decay[id(param)] == (0.0 if vectors_free else 0.5), name


def test_learned_temperature_is_clamped_after_each_training_step():
    brain = learned_temperature_brain()
    turbo_loss = brain.modules.turbo_loss
    with torch.no_grad():
        turbo_loss.log_inverse_temperature.fill_(math.log(500.0))
    # A step too small to bring it under the bound by itself.
    brain.opt_class = lambda groups: torch.optim.SGD(groups, lr=1e-9)
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN)
    brain.modules.train()
    brain.fit_batch(make_batch())
    assert float(turbo_loss.inverse_temperature()) == pytest.approx(100.0)


def test_brain_draws_new_duration_sized_batches_every_epoch():
    """SpeechBrain alone would repeat epoch 0's batches in one process."""
    from test_recipe_steps import duration_dataset, duration_hparams

    from speechbrain_turbo.batching import train_loader_options

    durations = [0.5 + 0.1 * i for i in range(30)]
    dataset = duration_dataset(durations)
    dataset.set_output_keys(["id"])
    options = train_loader_options(duration_hparams(), dataset)
    brain = make_brain()
    loader = brain.make_dataloader(dataset, sb.Stage.TRAIN, **options)
    epochs = []
    for epoch in (1, 2, 1):
        brain.train_sampler.set_epoch(epoch)  # as Brain.fit does
        epochs.append([batch.id for batch in loader])
    assert epochs[0] != epochs[1]
    assert epochs[0] == epochs[2]  # rebuilt exactly (resume)


def test_epoch_reports_the_fraction_of_audio_that_was_padding():
    brain = make_brain()
    brain.init_optimizers()
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN)
    brain.fit_batch(make_batch())  # audio of 10, 11, 12 and 13 frames
    brain.fit_batch(make_batch(batch_size=1))  # one row: no padding
    brain.on_stage_end(sb.Stage.TRAIN, 0.0)
    padded = 4 * 13 - (10 + 11 + 12 + 13)
    assert brain.train_stats["padding"] == pytest.approx(padded / (52 + 10))


def test_training_curves_are_drawn_after_the_first_and_last_epoch(
    tmp_path, monkeypatch
):
    from types import SimpleNamespace

    from speechbrain_turbo import reports as reports_module

    drawn = []
    monkeypatch.setattr(
        reports_module,
        "plot_training_curves",
        lambda history, path: drawn.append(len(history)),
    )
    reports = reports_module.StageReports()
    reports.hparams = SimpleNamespace(
        output_folder=str(tmp_path),
        epoch_counter=SimpleNamespace(limit=5),
    )
    reports.train_stats = {"CE": 1.0}
    for epoch in range(1, 6):
        reports._record_history(epoch, {"UA": 0.5})
    # Epochs 2-4 end within CURVES_INTERVAL_S of the drawing after epoch 1.
    assert drawn == [1, 5]
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == 5  # the history itself is written every epoch

    monkeypatch.setattr(reports_module, "CURVES_INTERVAL_S", 0.0)
    drawn.clear()
    reports._record_history(6, {"UA": 0.5})
    assert drawn == [6]


def test_contrastive_diagnostics_are_logged_in_training_and_validation():
    brain = make_brain(grad_ratio_interval=1)
    batch = make_batch()
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN)
    brain.step = 1
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    brain.on_stage_end(sb.Stage.TRAIN, 0.0)
    train = brain.train_stats
    for m in ("audio", "text"):
        assert train[f"in_modal_{m}"] > 0
        # Dropout 0.3: the two views differ.
        assert -1 <= train[f"neg_cos_{m}"] <= 1
        assert -1 <= train[f"pos_cos_{m}"] < 1
    # Utterances 0 and 2 share a transcript: each has 3 of 4 candidates.
    assert train["R1_chance"] == pytest.approx((1 / 3 + 1 / 4 * 2 + 1 / 3) / 4)
    assert 0 <= train["R1_audio_text"] <= 1
    assert train["grad_ratio"] > 0

    brain.modules.eval()
    brain.on_stage_start(sb.Stage.VALID)
    with torch.no_grad():
        out = brain.compute_forward(batch, sb.Stage.VALID)
        brain.compute_objectives(out, batch, sb.Stage.VALID)
    brain.hparams.label_encoder = list(range(NUM_CLASSES))
    valid = brain._evaluation_stats(0.0)
    views = {m: (v[0], v[0]) for m, v in out["views"].items()}
    groups = transcript_group_ids(batch.transcript).tolist()
    expected = reference_turbo(
        views,
        temperature=0.1,
        w_in=1.0,
        w_cross=1.0,
        labels=None,
        groups=groups,
    )
    assert valid["cross_modal"] == pytest.approx(expected["cross_modal"])
    assert {"R1_audio_text", "pos_cos_audio_text", "in_modal_audio"} <= set(
        valid
    )
    # One view in evaluation: no in-modal cosines.
    assert "pos_cos_audio" not in valid


def test_gradient_ratio_is_the_ratio_of_the_terms_gradient_norms():
    brain = make_brain(turbo_weight=0.5)
    brain.modules.train()
    batch = make_batch()
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    labels = batch.label.data.reshape(-1)
    ce = F.cross_entropy(out["logits"], labels.repeat(2))
    turbo = 0.5 * brain.modules.turbo_loss(out["views"])["loss"]
    ratio = brain._gradient_ratio(ce, turbo)
    norms = []
    for term in (turbo, ce):
        brain.modules.zero_grad()
        term.backward(retain_graph=True)
        norms.append(
            sum(
                float(p.grad.pow(2).sum())
                for name in ("audio_encoder", "text_encoder")
                for p in brain.modules[name].parameters()
                if p.grad is not None
            )
            ** 0.5
        )
    assert ratio == pytest.approx(norms[0] / norms[1], rel=1e-5)


def test_measuring_the_gradient_ratio_leaves_training_unchanged():
    trained = []
    for interval in (1, 0):
        brain = make_brain(grad_ratio_interval=interval)
        brain.init_optimizers()
        brain.on_stage_start(sb.Stage.TRAIN)
        torch.manual_seed(3)
        for step in (1, 2):
            brain.step = step
            brain.fit_batch(make_batch())
        trained.append(parameters_of(brain))
        brain.on_stage_end(sb.Stage.TRAIN, 0.0)
        assert ("grad_ratio" in brain.train_stats) == (interval == 1)
    for measured, plain in zip(*trained):
        assert torch.equal(measured, plain)


def test_weighted_layer_sum_trains_at_the_heads_rate():
    brain = make_brain(
        encoder_opt_class=lambda params: torch.optim.AdamW(params, lr=1e-5)
    )
    brain.modules.audio_encoder.pooling = torch.nn.Sequential(
        WeightedLayerSum(3)
    )
    brain.init_optimizers()
    scores = brain.modules.audio_encoder.pooling[0].scores
    (head_group,) = brain.optimizer.param_groups
    (encoder_group,) = brain.encoder_optimizer.param_groups
    assert any(p is scores for p in head_group["params"])
    assert not any(p is scores for p in encoder_group["params"])


def test_uniformity_in_row_blocks_is_the_all_pairs_value():
    x = torch.randn(37, 8)
    unit = torch.nn.functional.normalize(x, dim=-1)
    expected = torch.pdist(unit).pow(2).mul(-2.0).exp().mean().log()
    for block_rows in (1, 5, 37, 1024):
        assert uniformity(x, block_rows=block_rows) == pytest.approx(
            float(expected), abs=1e-5
        )
