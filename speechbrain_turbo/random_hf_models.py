"""Randomly initialised HuggingFace models saved as local ``source`` folders.

Tests (tiny models) and benchmarks (full-size architectures) load them
through the same ``--audio_hub`` / ``--text_hub`` keys as real checkpoints,
with nothing downloaded. The weights are random: these models measure code
paths and costs, never accuracy.

Authors
 * speechbrain-turbo contributors
"""

import json
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


def save_random_speech_model(
    folder, family="wav2vec2", size="tiny", seed=0, **config_options
):
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
    **config_options
        More config attributes, e.g. ``add_adapter=True``.

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
    config = getattr(transformers, config_name)(**options, **config_options)
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


WHISPER_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
    "<|0.00|>",
)


def save_random_whisper_model(folder, seed=0):
    """Saves a tiny random English-only Whisper with a byte-level tokenizer.

    Only printable characters can win the decoder's argmax, so that its
    (meaningless) transcripts are text that tokenizers keep.

    Arguments
    ---------
    folder : str
        Output folder (created).
    seed : int
        Seed of the random weights.

    Returns
    -------
    str
        ``folder``, usable as a HuggingFace ``source``.

    Example
    -------
    >>> import tempfile
    >>> folder = save_random_whisper_model(tempfile.mkdtemp())
    >>> transformers.WhisperTokenizer.from_pretrained(folder).decode(
    ...     [71, 72]
    ... )
    'hi'
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    os.makedirs(folder, exist_ok=True)
    byte_chars = bytes_to_unicode()
    vocab = {char: i for i, char in enumerate(byte_chars.values())}
    for token in WHISPER_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    vocab_file = os.path.join(folder, "vocab.json")
    merges_file = os.path.join(folder, "merges.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        json.dump(vocab, f)
    with open(merges_file, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    end = WHISPER_SPECIAL_TOKENS[0]
    tokenizer = transformers.WhisperTokenizer(
        vocab_file,
        merges_file,
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": list(WHISPER_SPECIAL_TOKENS[1:])}
    )
    tokenizer.save_pretrained(folder)

    start = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        # Two encoder layers, so that keeping the first one is a real cut.
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        d_model=16,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_target_positions=64,
        decoder_start_token_id=start,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config)
    printable = {
        vocab[char]
        for byte, char in byte_chars.items()
        if byte < 128 and (chr(byte).isalnum() or chr(byte) == " ")
    }
    with torch.no_grad():
        embeddings = model.model.decoder.embed_tokens.weight
        for token in range(len(tokenizer)):
            if token not in printable:
                embeddings[token] = 0.0
    model.save_pretrained(folder)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(
        folder
    )
    return folder
