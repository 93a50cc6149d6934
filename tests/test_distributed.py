"""TurboLoss across processes (gloo, 2 CPU processes): gathering every
rank's rows as negatives gives the loss and, after DDP's gradient averaging,
the gradients of one process holding the whole global batch.
"""

import functools
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from speechbrain_turbo.losses import TurboLoss

# Runs whole recipes or several processes: deselect with -m "not slow".
pytestmark = pytest.mark.slow

WORLD = 2
ROWS = 3  # per process, when equal
# Rows of each process: equal, and unequal (as duration-sized batches).
SPLITS = {"equal": (ROWS, ROWS), "unequal": (2, 4)}
OPTIONS = {
    "plain": {},
    "label_aware": {"label_aware": True},
    "learned_temperature": {"learn_temperature": True, "label_aware": True},
    "label_positives": {"label_positives": True},
}


def make_problem(options):
    """The same encoders, loss and global batch in every process."""
    torch.manual_seed(0)
    encoders = torch.nn.ModuleDict(
        {"audio": torch.nn.Linear(6, 8), "text": torch.nn.Linear(5, 8)}
    )
    loss_fn = TurboLoss(temperature=0.2, **options)
    generator = torch.Generator().manual_seed(1)
    total = WORLD * ROWS
    inputs = {
        "audio": torch.randn(2, total, 6, generator=generator),
        "text": torch.randn(2, total, 5, generator=generator),
    }
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    groups = torch.tensor([7, 8, 9, 7, 10, 11])  # rows 0 and 3: same text
    return encoders, loss_fn, inputs, labels, groups


def compute(encoders, loss_fn, inputs, labels, groups, rows):
    views = {
        m: (encoders[m](x[0, rows]), encoders[m](x[1, rows]))
        for m, x in inputs.items()
    }
    return loss_fn(views, labels=labels[rows], groups=groups[rows])


def worker(rank, init_file, out_file):
    """One DDP process, started once for every case (TurboLoss with each
    of OPTIONS and SPLITS, the weighted cross-entropy) in one process
    group; rank 0 saves each case's loss and gradients."""
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD
    )
    cases = {
        (name, split): functools.partial(turbo_loss_case, rank, name, split)
        for name in OPTIONS
        for split in SPLITS
    }
    cases["cross_entropy"] = functools.partial(
        cross_entropy_case, rank, SPLITS["unequal"]
    )
    results = {}
    for case, run in cases.items():
        try:
            results[case] = run()
        except Exception as error:
            raise RuntimeError(f"case {case}") from error
    if rank == 0:
        torch.save(results, out_file)
    dist.destroy_process_group()


def turbo_loss_case(rank, name, split):
    """This process's rows, gathered negatives, and the loss and gradients
    averaged over the processes (as DDP averages gradients)."""
    encoders, loss_fn, inputs, labels, groups = make_problem(OPTIONS[name])
    sizes = SPLITS[split]
    rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
    out = compute(encoders, loss_fn, inputs, labels, groups, rows)
    out["loss"].backward()
    parameters = [*encoders.parameters(), *loss_fn.parameters()]
    for parameter in parameters:  # what DDP does to gradients
        dist.all_reduce(parameter.grad)
        parameter.grad /= WORLD
    loss = out["loss"].detach().clone()
    dist.all_reduce(loss)
    return {"loss": loss / WORLD, "grads": [p.grad for p in parameters]}


def cross_entropy_case(rank, sizes):
    """The cross-entropy of this process's rows weighted by its share of
    the global batch; the gradients averaged over the processes."""
    from speechbrain_turbo.losses import share_of_global_batch

    classifier, inputs, labels = make_ce_problem(sum(sizes))
    rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
    ce = torch.nn.functional.cross_entropy(
        classifier(inputs[rows]), labels[rows]
    )
    (ce * share_of_global_batch(len(labels[rows]), "cpu")).backward()
    for parameter in classifier.parameters():  # what DDP does to gradients
        dist.all_reduce(parameter.grad)
        parameter.grad /= WORLD
    return [p.grad for p in classifier.parameters()]


def make_ce_problem(rows):
    torch.manual_seed(0)
    classifier = torch.nn.Linear(4, 3)
    inputs = torch.randn(rows, 4, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(rows) % 3
    return classifier, inputs, labels


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    """Each case's results from WORLD gloo processes (see ``worker``)."""
    folder = tmp_path_factory.mktemp("distributed")
    out_file = str(folder / "distributed.pt")
    mp.spawn(
        worker,
        args=(str(folder / "init"), out_file),
        nprocs=WORLD,
        join=True,
    )
    return torch.load(out_file)


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", list(OPTIONS))
def test_gathered_loss_and_gradients_equal_one_process(
    distributed_results, name, split
):
    options = OPTIONS[name]
    distributed = distributed_results[name, split]

    encoders, loss_fn, inputs, labels, groups = make_problem(
        {**options, "gather_across_ranks": False}
    )
    out = compute(encoders, loss_fn, inputs, labels, groups, slice(None))
    out["loss"].backward()
    single = [p.grad for p in [*encoders.parameters(), *loss_fn.parameters()]]

    torch.testing.assert_close(
        distributed["loss"], out["loss"].detach(), atol=1e-5, rtol=0
    )
    assert len(single) == len(distributed["grads"])
    for expected, got in zip(single, distributed["grads"]):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_gathering_outside_a_process_group_is_refused():
    loss_fn = TurboLoss(gather_across_ranks=True)
    x = torch.randn(2, 4)
    assert not os.environ.get("WORLD_SIZE")
    with pytest.raises(RuntimeError, match="torchrun"):
        loss_fn({"audio": (x, x)})


def run_recipe_under_torchrun(hparams_file, *overrides):
    """The IEMOCAP recipe in WORLD gloo processes on this CPU."""
    from conftest import REPO, run_under_torchrun

    return run_under_torchrun(
        os.path.join(REPO, "recipes", "IEMOCAP", "turbo"),
        hparams_file,
        *overrides,
        processes=WORLD,
    )


def test_demo_recipe_trains_and_tests_under_torchrun_gloo(
    tmp_path, tiny_corpus
):
    import csv
    import json

    output = tmp_path / "ddp"
    result = run_recipe_under_torchrun(
        "hparams/demo.yaml",
        f"--data_folder={tiny_corpus}",
        f"--output_folder={output}",
        "--demo_utterances_per_speaker=8",
        "--number_of_epochs=2",
        "--batch_size=4",
        "--channels=16",
        "--fusion_dim=16",
        "--projection_dim=8",
        "--token_embedding_dim=8",
        "--vocab_size=80",
        # Batches of unequal sizes on the two processes.
        "--dynamic_batching=True",
        "--max_batch_length=12",
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Test WA" in log
    metrics = json.loads((output / "test_metrics.json").read_text())
    assert 0.0 <= metrics["UA"] <= 1.0
    # Both processes' shares of the test set, each utterance once.
    test = json.loads((output / "test_screened.json").read_text())
    with open(output / "test_predictions.csv", encoding="utf-8") as f:
        predicted = [row["ID"] for row in csv.DictReader(f)]
    assert sorted(predicted) == sorted(test)
    # Each process scored its own shard, not the whole set.
    shards = metrics["scored_per_process"]
    assert len(shards) == WORLD
    assert max(shards) == -(-len(test) // WORLD)
    assert len(test) <= sum(shards) < len(test) + WORLD


def test_pretrained_recipe_trains_under_torchrun_gloo(
    tmp_path, tiny_corpus, tiny_hf_models
):
    """turbo.yaml under DDP: every trainable parameter of the HF encoders
    must get a gradient (DDP stops otherwise at the second step)."""
    output = tmp_path / "ddp_pretrained"
    result = run_recipe_under_torchrun(
        "hparams/turbo.yaml",
        f"--data_folder={tiny_corpus}",
        f"--audio_hub={tiny_hf_models[0]}",
        f"--text_hub={tiny_hf_models[1]}",
        f"--pretrained_folder={tmp_path / 'pretrained'}",
        f"--output_folder={output}",
        "--number_of_epochs=2",
        "--batch_size=4",
        "--num_workers=0",
        "--fusion_dim=16",
        "--projection_dim=8",
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Test WA" in log and "Test without text WA" in log


def test_unequal_batches_weight_cross_entropy_by_their_rows(
    distributed_results,
):
    """Gradients equal one process's on the concatenated batch: unweighted,
    the 2-row process's rows would count twice as much as the others."""
    sizes = SPLITS["unequal"]
    distributed = distributed_results["cross_entropy"]
    classifier, inputs, labels = make_ce_problem(sum(sizes))
    torch.nn.functional.cross_entropy(classifier(inputs), labels).backward()
    for expected, got in zip(classifier.parameters(), distributed):
        torch.testing.assert_close(got, expected.grad, atol=1e-6, rtol=0)


def sentencepiece_worker(rank, init_file, folder, out_file):
    """One DDP process fitting the tokenizer of a 1-sentence corpus."""
    import functools

    from speechbrain.tokenizers.SentencePiece import SentencePiece

    from speechbrain_turbo.dataio import fit_sentencepiece

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD
    )
    make = functools.partial(
        SentencePiece,
        model_dir=folder,
        vocab_size=300,  # more than the sentence allows
        annotation_train=os.path.join(folder, "train.json"),
        annotation_read="text",
        annotation_format="json",
    )
    size = fit_sentencepiece(make).sp.vocab_size()
    dist.barrier()  # hangs here if the processes' collectives went astray
    torch.save(size, f"{out_file}.{rank}")
    dist.destroy_process_group()


def test_lowered_vocabulary_is_fitted_once_and_loaded_by_every_process(
    tmp_path,
):
    import json

    texts = {f"u{i}": {"text": "dogs are sitting"} for i in range(4)}
    (tmp_path / "train.json").write_text(json.dumps(texts))
    out_file = str(tmp_path / "size")
    context = mp.spawn(
        sentencepiece_worker,
        args=(str(tmp_path / "init"), str(tmp_path), out_file),
        nprocs=WORLD,
        join=False,
    )
    deadline = time.time() + 120
    while not context.join(timeout=1):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the processes hung fitting the tokenizer")
    sizes = [torch.load(f"{out_file}.{rank}") for rank in range(WORLD)]
    assert sizes[0] == sizes[1] < 300
