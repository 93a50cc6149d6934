"""The plugin's workarounds step aside where SpeechBrain has the fix of
upstream/patches/ (tools/upstream_check.sh runs the whole suite on such a
SpeechBrain; here the probes and the choice are tested on stand-ins)."""

import dataclasses

import pytest
import speechbrain as sb
import torch

from speechbrain_turbo import brain_workarounds
from speechbrain_turbo.brain_workarounds import SpeechBrainWorkarounds


class EpochAwareSampler:
    """A batch sampler stand-in."""

    def set_epoch(self, epoch):
        """Nothing to do."""


def adopting_train_loader_specifics(self, dataset, loader_kwargs):
    """A Brain that adopts a batch sampler (what patch 0001 does)."""
    self.train_sampler = loader_kwargs["batch_sampler"]
    return loader_kwargs


def wrap_without_syncbn_on_cpu(self):
    """A Brain that skips SyncBatchNorm on CPU (what patch 0002 does)."""
    for name, module in self.modules.items():
        if torch.device(self.device).type != "cpu":
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        self.modules[name] = module


def wrap_with_syncbn(self):
    """SpeechBrain 1.1's behaviour."""
    for name, module in self.modules.items():
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        self.modules[name] = module


def test_probes_tell_a_fixed_speechbrain_from_one_without(monkeypatch):
    monkeypatch.setattr(
        sb.Brain, "_train_loader_specifics", lambda self, d, kw: kw
    )
    assert not brain_workarounds._probe_batch_sampler_epochs()
    monkeypatch.setattr(
        sb.Brain, "_train_loader_specifics", adopting_train_loader_specifics
    )
    assert brain_workarounds._probe_batch_sampler_epochs()

    monkeypatch.setattr(sb.Brain, "_wrap_distributed", wrap_with_syncbn)
    assert not brain_workarounds._probe_cpu_ddp_batchnorm()
    monkeypatch.setattr(
        sb.Brain, "_wrap_distributed", wrap_without_syncbn_on_cpu
    )
    assert brain_workarounds._probe_cpu_ddp_batchnorm()

    from speechbrain.utils import run_opts

    @dataclasses.dataclass(frozen=True)
    class WithSharding:
        shard_evaluation: bool = False

    @dataclasses.dataclass(frozen=True)
    class WithoutSharding:
        debug: bool = False

    monkeypatch.setattr(run_opts, "RunOptions", WithoutSharding)
    assert not brain_workarounds._probe_shard_evaluation()
    monkeypatch.setattr(run_opts, "RunOptions", WithSharding)
    assert brain_workarounds._probe_shard_evaluation()


def test_probes_of_loader_generators_and_non_finite_skipping(monkeypatch):
    def loader_with(generator):
        def make_dataloader(self, dataset, stage, **loader_kwargs):
            """A Brain's loader, with or without a generator of its own."""
            return torch.utils.data.DataLoader(
                dataset, batch_size=1, generator=generator
            )

        return make_dataloader

    monkeypatch.setattr(sb.Brain, "make_dataloader", loader_with(None))
    assert not brain_workarounds._probe_loader_generator()
    monkeypatch.setattr(
        sb.Brain, "make_dataloader", loader_with(torch.Generator())
    )
    assert brain_workarounds._probe_loader_generator()

    # SpeechBrain 1.1 counts a non-finite loss and returns nothing (and
    # backpropagates it); with the fix it returns the verdict.
    monkeypatch.setattr(sb.Brain, "check_loss_isfinite", lambda self, x: None)
    assert not brain_workarounds._probe_nonfinite_skip()
    monkeypatch.setattr(
        sb.Brain,
        "check_loss_isfinite",
        lambda self, loss: bool(torch.isfinite(loss)),
    )
    assert brain_workarounds._probe_nonfinite_skip()


def test_a_probe_that_fails_keeps_the_workaround(monkeypatch):
    def broken():
        raise AttributeError("Brain changed")

    monkeypatch.setattr(brain_workarounds, "_probe_shard_evaluation", broken)
    brain_workarounds.speechbrain_has.cache_clear()
    try:
        assert brain_workarounds.speechbrain_has("shard_evaluation") is False
    finally:
        brain_workarounds.speechbrain_has.cache_clear()
    with pytest.raises(ValueError, match="Unknown SpeechBrain fix"):
        brain_workarounds.speechbrain_has("faster_everything")


class RecordingBrain:
    """What the mixin calls with super(): records the calls."""

    def _wrap_distributed(self):
        """SpeechBrain's wrapping."""
        self.calls.append("speechbrain wraps")

    def _train_loader_specifics(self, dataset, loader_kwargs):
        """SpeechBrain's set-up, without adopting the batch sampler."""
        return loader_kwargs


class MixedBrain(SpeechBrainWorkarounds, RecordingBrain):
    """The mixin over the recording stand-in, a DDP process on CPU."""

    device = "cpu"
    distributed_launch = True
    find_unused_parameters = False

    def __init__(self):
        self.calls = []
        self.modules = {}
        self.train_sampler = None


@pytest.mark.parametrize("fixed", [False, True])
def test_the_workaround_runs_only_where_speechbrain_lacks_the_fix(
    monkeypatch, fixed
):
    monkeypatch.setattr(brain_workarounds, "speechbrain_has", lambda fix: fixed)
    brain = MixedBrain()
    brain._wrap_distributed()
    assert brain.calls == (["speechbrain wraps"] if fixed else [])

    sampler = EpochAwareSampler()
    brain._train_loader_specifics([], {"batch_sampler": sampler})
    # Fixed, SpeechBrain adopts the sampler (not this stand-in); else ours.
    assert (brain.train_sampler is sampler) is not fixed


@pytest.mark.parametrize("fixed", [False, True])
def test_a_speechbrain_without_a_needed_method_is_refused(monkeypatch, fixed):
    monkeypatch.delattr(sb.Brain, "_wrap_distributed")
    monkeypatch.setattr(brain_workarounds, "speechbrain_has", lambda fix: fixed)
    if fixed:  # SpeechBrain has the fix: the method is not needed.
        brain_workarounds.check_speechbrain_methods()
        return
    with pytest.raises(RuntimeError) as error:  # as the Brain is made
        type("AnyBrain", (SpeechBrainWorkarounds, RecordingBrain), {})()
    message = str(error.value)
    assert "Brain._wrap_distributed (to run DDP on CPU (gloo))" in message
    assert sb.__version__ in message and "speechbrain>=1.1,<1.2" in message
