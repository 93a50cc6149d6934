"""A web page to try an exported model: ``speechbrain-turbo serve``.

    speechbrain-turbo serve --model MODEL [--host 127.0.0.1] [--port 7860]

The page (Gradio, installed with ``pip install -e ".[app]"``) takes a
recording from the microphone or an uploaded file, and an optional
transcript. It shows the class probabilities of the model given the audio
and the transcript (typed, transcribed by the model's Whisper when it was
exported with ``--asr_hub``, or none), and beside them the audio-only
prediction, so that one sees what the words changed. A file that cannot be
used gets a one-line message on the page; the server keeps serving.

Limits: uploads larger than ``max_audio_seconds`` of 48 kHz stereo 32-bit
audio are refused by the server, transcripts beyond 2,000 characters or
512 tokens by the page; at most 16 submissions wait for the one worker;
uploads are deleted after 10 minutes and when the server stops (Ctrl-C or
SIGTERM), and at most 64 of at most 512 MB in all are kept; messages
name files by their base name only. Bound to another address than the
loopback one, the server warns that anyone who can reach it can use it.

:func:`classify_for_page` is the page's whole logic and runs without
Gradio.

Authors
 * speechbrain-turbo contributors
"""

import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass, field

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

# Transcripts longer than this are refused (a typed sentence or a few; a
# 10 MB paste would block the page's one worker for minutes).
MAX_TRANSCRIPT_CHARACTERS = 2000
MAX_TRANSCRIPT_TOKENS = 512
# Submissions waiting for the worker beyond this are turned away.
MAX_QUEUE_SIZE = 16
# Uploads older than this are deleted (checked every minute), and all of
# them when the server stops (Ctrl-C or SIGTERM).
UPLOAD_LIFETIME_SECONDS = 600
# At most this many uploads, of at most this many bytes in all, are kept:
# the oldest beyond either go (checked every second).
MAX_STORED_UPLOADS = 64
MAX_STORED_UPLOAD_BYTES = 512 * 2**20
UPLOADS_PREFIX = "speechbrain-turbo-uploads-"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class PageResult:
    """What the page shows for one submission.

    Arguments
    ---------
    message : str
        Markdown: the prediction and which transcript was used, or why
        nothing was classified.
    probabilities : dict
        Label -> probability with audio and transcript (empty when nothing
        was classified).
    audio_only : dict
        Label -> probability from the audio alone (empty when the model has
        no audio-only path or nothing was classified).
    """

    message: str
    probabilities: dict = field(default_factory=dict)
    audio_only: dict = field(default_factory=dict)


def _as_dict(classifier, probabilities):
    """Label name -> probability of the one row of a ``[1, C]`` tensor."""
    return {
        name: float(p)
        for name, p in zip(classifier.display_names, probabilities[0].tolist())
    }


def _screened(classifier, audio_path):
    """The recording's waveform, or None and the page's message saying why
    it cannot be used (the command line's checks,
    :meth:`TurboClassifier.screened_file`).
    """
    if not audio_path:
        return None, "Record something or upload a file, then press Classify."
    wav, problem = classifier.screened_file(audio_path)
    if problem is None:
        return wav, None
    reason = _hide_server_paths(problem[0], audio_path)
    return None, f"Cannot use this recording: {reason}; {problem[1]}."


def _hide_server_paths(message, audio_path):
    """The message with the upload's server path replaced by its base name
    (the file as the user knows it, not Gradio's copy), in every form a
    message may quote it: as is, or escaped by ``repr`` or ``ascii`` (file
    names with characters Python does not print).
    """
    folder = os.path.dirname(audio_path)
    replacements = (
        (audio_path, os.path.basename(audio_path)),
        (folder + os.sep, ""),
        (folder, ""),
    )
    for path, shown in replacements:
        for form in (path, repr(path)[1:-1], ascii(path)[1:-1]):
            if form and form != os.sep:
                message = message.replace(form, shown)
    return message


def classify_for_page(classifier, audio_path, text=None):
    """Classifies one recording as the page shows it.

    Arguments
    ---------
    classifier : speechbrain_turbo.inference.TurboClassifier
        The served model.
    audio_path : str or None
        The recording (None or empty: nothing submitted).
    text : str, optional
        A typed transcript; empty means use the model's ASR if it has one,
        else the audio-only path.

    Returns
    -------
    PageResult
        The message and the probabilities to show.

    Example
    -------
    >>> classify_for_page(None, None).message
    'Record something or upload a file, then press Classify.'
    """
    wav, problem = _screened(classifier, audio_path)
    if problem is not None:
        return PageResult(problem)
    text = (text or "").strip() or None
    problem = _transcript_problem(classifier, text)
    if problem is not None:
        return PageResult(problem)
    try:
        wav = wav.unsqueeze(0)
        probabilities, score, _, labels = classifier.classify_batch(
            wav, texts=[text]
        )
        source = classifier.text_sources[0]
        transcript = classifier.transcripts[0]
        audio_only = {}
        if source != "absent" and "audio" in classifier.modalities:
            alone, _, _, _ = classifier.classify_batch(
                wav, texts=[None], transcribe=False
            )
            audio_only = _as_dict(classifier, alone)
    except Exception as error:  # a decoder's or the model's own error types
        logger.exception("Could not classify %s", audio_path)
        # The server's folders stay on the server.
        reason = _hide_server_paths(str(error), audio_path)
        return PageResult(f"Could not classify this recording: {reason}")
    used = {
        "given": "the audio and the typed transcript",
        "asr": f"the audio and the model's Whisper transcript “{transcript}”",
        "absent": "the audio alone (no transcript)",
    }[source]
    probabilities = _as_dict(classifier, probabilities)
    if source == "absent":
        audio_only = probabilities
    name = classifier.display_names[classifier.labels.index(labels[0])]
    shown = f"**{name}** ({float(score[0]):.0%})"
    if name != labels[0]:  # the code too, as the command line prints it
        shown = f"**{name}** ({labels[0]}, {float(score[0]):.0%})"
    message = f"{shown}, from {used}."
    return PageResult(message, probabilities, audio_only)


def _transcript_problem(classifier, text):
    """The page's message for a transcript too long to use, or None."""
    if text is None:
        return None
    if len(text) > MAX_TRANSCRIPT_CHARACTERS:
        return (
            f"The transcript has {len(text):,} characters; this page takes "
            f"at most {MAX_TRANSCRIPT_CHARACTERS:,}: shorten it."
        )
    if "text" in classifier.modalities:
        tokens = len(classifier.text_to_ids(text))
        if tokens > MAX_TRANSCRIPT_TOKENS:
            return (
                f"The transcript has {tokens:,} tokens; this page takes at "
                f"most {MAX_TRANSCRIPT_TOKENS}: shorten it."
            )
    return None


def upload_limit_bytes(max_audio_seconds):
    """The largest upload the page accepts: ``max_audio_seconds`` of
    uncompressed 48 kHz stereo 32-bit audio (the largest usual recording
    format), plus a megabyte of headers.

    Arguments
    ---------
    max_audio_seconds : float or None
        The model's limit (None: 60 s).

    Returns
    -------
    int
        Bytes.

    Example
    -------
    >>> upload_limit_bytes(60)
    24088576
    """
    seconds = 60 if max_audio_seconds is None else max_audio_seconds
    return int(seconds * 48000 * 2 * 4) + 2**20


def build_page(classifier, title="speechbrain-turbo"):
    """The Gradio page serving ``classifier``.

    Arguments
    ---------
    classifier : speechbrain_turbo.inference.TurboClassifier
        The served model.
    title : str
        The browser tab's title.

    Returns
    -------
    gradio.Blocks
        The page (its ``classify`` API endpoint takes audio and text).
    """
    import gradio as gr

    classes = len(classifier.labels)

    def submit(audio_path, text):
        """The button's handler: the page's three outputs."""
        result = classify_for_page(classifier, audio_path, text)
        return (
            result.message,
            result.probabilities or None,
            result.audio_only or None,
        )

    asr = (
        "left empty, the model's Whisper transcribes the audio"
        if classifier.has_asr
        else "left empty, the model uses the audio alone"
    )
    with gr.Blocks(
        title=title,
        analytics_enabled=False,
        delete_cache=(60, UPLOAD_LIFETIME_SECONDS),
    ) as page:
        gr.Markdown(
            "## Speech emotion recognition with a Turbo model\n"
            f"Classes: {', '.join(classifier.display_names)}. Record or "
            f"upload speech, and type what is said if you like ({asr})."
        )
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    format=None,  # our loader reads the file as it came
                    label="Speech",
                    elem_id="speech",
                )
                text = gr.Textbox(
                    label="Transcript (optional)",
                    elem_id="transcript",
                    max_length=MAX_TRANSCRIPT_CHARACTERS,
                )
                button = gr.Button("Classify", variant="primary", elem_id="go")
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                with gr.Row():
                    both = gr.Label(
                        label="Audio and transcript",
                        num_top_classes=classes,
                        elem_id="prediction",
                    )
                    alone = gr.Label(
                        label="Audio only",
                        num_top_classes=classes,
                        elem_id="audio_only",
                    )
        button.click(
            submit,
            inputs=[audio, text],
            outputs=[message, both, alone],
            api_name="classify",
        )
        if classifier.examples:
            # One click fills the inputs and shows the prediction.
            gr.Examples(
                examples=[list(example) for example in classifier.examples],
                inputs=[audio, text],
                outputs=[message, both, alone],
                fn=submit,
                run_on_click=True,
                cache_examples=False,
                label="Examples (click one)",
                elem_id="examples",
            )
    return page


def serve(model_folder, host="127.0.0.1", port=7860, device="cpu"):
    """Loads an exported model and serves its page until interrupted.

    Arguments
    ---------
    model_folder : str
        A folder written by ``speechbrain-turbo export``.
    host : str
        Address to listen on (loopback by default).
    port : int
        Port to listen on.
    device : str
        Torch device of the model.
    """
    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise SystemExit(
            "speechbrain-turbo serve needs Gradio: pip install -e '.[app]' "
            f"(or pip install gradio) ({error})"
        ) from error
    from speechbrain_turbo.inference import ModelFolderError, TurboClassifier

    try:
        classifier = TurboClassifier.from_hparams(
            model_folder, run_opts={"device": device}
        )
    except ModelFolderError as error:
        raise SystemExit(f"speechbrain-turbo serve: {error}") from None
    warn_if_exposed(host)
    page = build_page(
        classifier, title=f"speechbrain-turbo: {os.path.basename(model_folder)}"
    )
    if not _port_free(host, port):
        raise SystemExit(
            f"speechbrain-turbo serve: port {port} on {host} is in use: "
            "stop what holds it or pass another --port"
        )
    # This server's own upload folder: capped while it serves, deleted
    # when it stops, however it is stopped (Ctrl-C or SIGTERM).
    uploads = tempfile.mkdtemp(prefix=UPLOADS_PREFIX)
    os.environ["GRADIO_TEMP_DIR"] = uploads
    stop = threading.Event()
    threading.Thread(
        target=_prune_every_second, args=(uploads, stop), daemon=True
    ).start()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        page.queue(max_size=MAX_QUEUE_SIZE).launch(
            server_name=host,
            server_port=port,
            show_error=False,
            max_file_size=upload_limit_bytes(classifier.max_audio_seconds),
            # Exactly the model folder's own example files, nothing else.
            allowed_paths=sorted(f for f, _ in classifier.examples),
        )
    except KeyboardInterrupt:
        logger.info("Stopping the server")
    finally:
        stop.set()
        page.close()
        shutil.rmtree(uploads, ignore_errors=True)


def prune_uploads(
    folder, max_files=MAX_STORED_UPLOADS, max_bytes=MAX_STORED_UPLOAD_BYTES
):
    """Deletes the oldest files under ``folder`` beyond the caps.

    Arguments
    ---------
    folder : str
        The server's upload folder.
    max_files : int
        Most files kept.
    max_bytes : int
        Most bytes kept in all.

    Returns
    -------
    int
        How many files were deleted.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     with open(os.path.join(folder, f"{i}.wav"), "wb") as f:
    ...         _ = f.write(b"x" * 10)
    >>> prune_uploads(folder, max_files=2), len(os.listdir(folder))
    (1, 2)
    """
    files = []
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            try:
                stat = os.stat(path)
            except OSError:  # deleted meanwhile
                continue
            files.append((stat.st_mtime, stat.st_size, path))
    files.sort(reverse=True)  # newest first
    kept_files, kept_bytes, deleted = 0, 0, 0
    for _, size, path in files:
        if kept_files < max_files and kept_bytes + size <= max_bytes:
            kept_files, kept_bytes = kept_files + 1, kept_bytes + size
            continue
        try:
            os.remove(path)
            deleted += 1
        except OSError:
            pass
    return deleted


def _prune_every_second(folder, stop):
    """The upload caps, enforced until ``stop`` is set."""
    while not stop.wait(1.0):
        deleted = prune_uploads(folder)
        if deleted:
            logger.warning(
                "Deleted the %d oldest uploads beyond the caps (%d files, "
                "%d MB)",
                deleted,
                MAX_STORED_UPLOADS,
                MAX_STORED_UPLOAD_BYTES // 2**20,
            )


def _stop_on_sigterm(signum, frame):
    """SIGTERM ends the server as Ctrl-C does (its uploads deleted)."""
    raise KeyboardInterrupt


def _port_free(host, port):
    """Whether a server could listen on ``host:port`` now."""
    import socket

    try:
        with socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET
        ) as probe:
            probe.bind((host, port))
        return True
    except OSError:
        return False


def warn_if_exposed(host):
    """Warns when the page listens beyond this machine.

    Arguments
    ---------
    host : str
        The address the server binds.

    Returns
    -------
    bool
        True when it warned.

    Example
    -------
    >>> warn_if_exposed("127.0.0.1")
    False
    """
    if host in LOOPBACK_HOSTS:
        return False
    logger.warning(
        "Serving on %s: anyone who can reach this address can use the page "
        "(no login, no rate limit beyond a queue of %d). Keep it behind a "
        "firewall or a proxy with authentication, or use --host 127.0.0.1.",
        host,
        MAX_QUEUE_SIZE,
    )
    return True
