"""Shared fixtures: a tiny synthesised corpus and tiny random HF models."""

import glob
import os
import subprocess
import sys

import pytest

from speechbrain_turbo.demo import synthesize_corpus
from speechbrain_turbo.random_hf_models import (
    save_random_speech_model,
    save_random_text_model,
)

REPO = os.path.join(os.path.dirname(__file__), os.pardir)


def run_python(cwd, *args):
    """Runs ``python *args`` in ``cwd`` offline on one thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def corpus_transcripts(corpus):
    """Every transcript line's text in an IEMOCAP-layout tree."""
    pattern = os.path.join(corpus, "Session*", "dialog", "transcriptions", "*")
    texts = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as f:
            texts += [line.split(":", 1)[1] for line in f if ":" in line]
    return texts


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """An IEMOCAP-layout demo corpus of 8 utterances per speaker."""
    folder = tmp_path_factory.mktemp("tiny_corpus") / "corpus"
    synthesize_corpus(str(folder), utterances_per_speaker=8)
    return folder


@pytest.fixture(scope="session")
def tiny_hf_models(tmp_path_factory, tiny_corpus):
    """Local folders of a tiny wav2vec2 and a tiny RoBERTa (+ tokenizer)."""
    root = tmp_path_factory.mktemp("tiny_hf")
    audio = save_random_speech_model(str(root / "wav2vec2"), "wav2vec2")
    text = save_random_text_model(
        str(root / "roberta"), corpus_transcripts(tiny_corpus), "roberta"
    )
    return audio, text
