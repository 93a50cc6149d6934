"""A web page to try an exported model: ``speechbrain-turbo serve``.

    speechbrain-turbo serve --model MODEL [--host 127.0.0.1] [--port 7860]

The page (Gradio, installed with ``pip install -e ".[app]"``) takes a
recording from the microphone or an uploaded file, and an optional
transcript. It shows the class probabilities of the model given the audio
and the transcript (typed, transcribed by the model's Whisper when it was
exported with ``--asr_hub``, or none), and beside them the audio-only
prediction, so that one sees what the words changed. A file that cannot be
used gets a one-line message on the page; the server keeps serving.

:func:`classify_for_page` is the page's whole logic and runs without
Gradio.

Authors
 * speechbrain-turbo contributors
"""

import os
from dataclasses import dataclass, field

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


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
    """Label -> probability of the one row of a ``[1, C]`` tensor."""
    return {
        label: float(p)
        for label, p in zip(classifier.labels, probabilities[0].tolist())
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
    # The page names the file as the user knows it, not Gradio's copy.
    reason = problem[0].replace(audio_path, os.path.basename(audio_path))
    return None, f"Cannot use this recording: {reason}; {problem[1]}."


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
        return PageResult(f"Could not classify this recording: {error}")
    used = {
        "given": "the audio and the typed transcript",
        "asr": f"the audio and the model's Whisper transcript “{transcript}”",
        "absent": "the audio alone (no transcript)",
    }[source]
    probabilities = _as_dict(classifier, probabilities)
    if source == "absent":
        audio_only = probabilities
    message = f"**{labels[0]}** ({float(score[0]):.0%}), from {used}."
    return PageResult(message, probabilities, audio_only)


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
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(
            "## Speech emotion recognition with a Turbo model\n"
            f"Classes: {', '.join(classifier.labels)}. Record or upload "
            f"speech, and type what is said if you like ({asr})."
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
                    label="Transcript (optional)", elem_id="transcript"
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
    from speechbrain_turbo.inference import TurboClassifier

    classifier = TurboClassifier.from_hparams(
        model_folder, run_opts={"device": device}
    )
    page = build_page(
        classifier, title=f"speechbrain-turbo: {os.path.basename(model_folder)}"
    )
    page.queue().launch(server_name=host, server_port=port, show_error=False)
