"""Randomly initialised HuggingFace models saved as local ``source`` folders.

Tests (tiny models) and benchmarks (full-size architectures) load them
through the same ``--audio_hub`` / ``--text_hub`` keys as real checkpoints,
with nothing downloaded. The weights are random: these models measure code
paths and costs, never accuracy.

Authors
 * speechbrain-turbo contributors
"""

import os
import re
import string

import torch
import transformers

SPEECH_FAMILIES = {
    # family: (config class, model class, normalise the waveform)
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", True),
    "hubert": ("HubertConfig", "HubertModel", False),
    "wavlm": ("WavLMConfig", "WavLMModel", False),
}
TEXT_FAMILIES = {
    # family: (config class, model class, vocabulary size of the base model)
    "bert": ("BertConfig", "BertModel", 30522),
    "roberta": ("RobertaConfig", "RobertaModel", 50265),
}
TINY_TRANSFORMER = {
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_random_speech_model(folder, family="wav2vec2", size="tiny", seed=0):
    """Saves a random speech encoder and its feature extractor config.

    Arguments
    ---------
    folder : str
        Output folder (created).
    family : str
        ``wav2vec2``, ``hubert`` or ``wavlm``.
    size : str
        ``tiny`` (16 hidden units, 2 layers, the base models' 320x
        downsampling) or ``base`` (the architecture of wav2vec2-base /
        hubert-base / wavlm-base-plus).
    seed : int
        Seed of the random weights.

    Returns
    -------
    str
        ``folder``, usable as a HuggingFace ``source``.

    Example
    -------
    >>> import tempfile
    >>> folder = save_random_speech_model(tempfile.mkdtemp())
    >>> sorted(os.listdir(folder))[:2]
    ['config.json', 'model.safetensors']
    """
    config_name, model_name, normalize = SPEECH_FAMILIES[family]
    options = {}
    if size == "tiny":
        options = dict(
            TINY_TRANSFORMER,
            conv_dim=(8, 8, 8, 8),
            conv_stride=(5, 4, 4, 4),
            conv_kernel=(10, 8, 8, 8),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        )
    elif size != "base":
        raise ValueError(f"size must be tiny or base, got {size!r}")
    config = getattr(transformers, config_name)(**options)
    torch.manual_seed(seed)
    getattr(transformers, model_name)(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(
        sampling_rate=16000,
        do_normalize=normalize,
        return_attention_mask=True,
    ).save_pretrained(folder)
    return folder


def save_random_text_model(folder, texts, family="bert", size="tiny", seed=0):
    """Saves a random text encoder with a WordPiece tokenizer built here.

    The vocabulary holds every lower-cased word and punctuation mark of
    ``texts``, then single characters (those of ``texts`` and ASCII, as word
    starts and ``##`` continuations) so that unseen words still tokenise.

    Arguments
    ---------
    folder : str
        Output folder (created).
    texts : list of str
        Sentences the vocabulary is built from.
    family : str
        ``bert`` or ``roberta`` (the model; the tokenizer is WordPiece).
    size : str
        ``tiny`` or ``base`` (the bert-base / roberta-base architecture).
    seed : int
        Seed of the random weights.

    Returns
    -------
    str
        ``folder``, usable as a HuggingFace ``source``.

    Example
    -------
    >>> import tempfile
    >>> folder = save_random_text_model(tempfile.mkdtemp(), ["Hi there."])
    >>> tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    >>> tokenizer.tokenize("Hi there, thor!")
    ['hi', 'there', ',', 't', '##h', '##o', '##r', '!']
    """
    config_name, model_name, base_vocab_size = TEXT_FAMILIES[family]
    words = sorted(
        {w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())}
    )
    chars = sorted(
        {c for w in words for c in w}
        | set(string.ascii_lowercase + string.digits + string.punctuation)
    )
    vocab = list(SPECIAL_TOKENS)
    for token in words + chars + [f"##{c}" for c in chars]:
        if token not in vocab:
            vocab.append(token)
    os.makedirs(folder, exist_ok=True)
    vocab_file = os.path.join(folder, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizer(vocab_file)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)

    if size == "tiny":
        options = dict(
            TINY_TRANSFORMER, vocab_size=len(vocab), max_position_embeddings=64
        )
    elif size == "base":
        options = {"vocab_size": max(base_vocab_size, len(vocab))}
        if family == "roberta":
            options["max_position_embeddings"] = 514
            options["type_vocab_size"] = 1
    else:
        raise ValueError(f"size must be tiny or base, got {size!r}")
    config = getattr(transformers, config_name)(
        pad_token_id=tokenizer.pad_token_id, **options
    )
    torch.manual_seed(seed)
    getattr(transformers, model_name)(config).save_pretrained(folder)
    return folder
