"""Checks the page of ``speechbrain-turbo serve`` in a real browser.

Serves a model on a loopback port, then drives headless Chromium
(Debian's ``chromium`` package) through Playwright: uploads a recording,
types its transcript, presses Classify and compares the label shown with
the one ``speechbrain-turbo classify`` prints; uploads a file that is not
audio and expects the page's message; clicks the first example exported
with the model (``export --examples N``) and expects its prediction, the
label the command line gives for the same file and transcript. Saves a
screenshot of the answered page. Exits with status 1 on any mismatch.

    apt-get install chromium && pip install -e ".[browser]"
    speechbrain-turbo export results/demo/turbo/session5_seed1234 \\
        results/demo_model --examples 2
    wav=results/demo/corpus/Session5/sentences/wav/Ses05F_impro01
    python tests/browser/check_serve_page.py --model results/demo_model \\
        --audio $wav/Ses05F_impro01_F000.wav \\
        --text "Honestly, I'll call Carla next month about the form."

Authors
 * speechbrain-turbo contributors
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Without these, Chromium keeps calling Google's hosts, which a closed
# network refuses many times a second.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port():
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_label(model, audio, text):
    """The label ``speechbrain-turbo classify`` prints for one file."""
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_turbo.cli", "classify"]
        + ["--model", model, "--audio", audio, "--text", text],
        capture_output=True,
        text=True,
        check=True,
    )
    return re.search(r"^label: (\S+)", result.stdout, re.M).group(1)


def wait_for(url, server, seconds=180):
    """Waits until ``url`` answers; RuntimeError if the server exits first
    or the page does not come up in ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.poll()}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                message = f"no page at {url} after {seconds} s"
                raise RuntimeError(message) from None
            time.sleep(1)


def start_server(model, **popen_options):
    """Starts ``speechbrain-turbo serve`` for ``model`` on a free loopback
    port and waits for its page.

    Arguments
    ---------
    model : str
        The exported model folder.
    **popen_options : dict
        Passed to ``subprocess.Popen`` (``cwd``, ``env``, ``stdout``...).

    Returns
    -------
    tuple
        The server process (terminate it when done) and the page's URL.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "speechbrain_turbo.cli", "serve"]
        + ["--model", str(model), "--port", str(port)],
        **popen_options,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(url, server)
    except BaseException:
        server.terminate()
        server.wait(timeout=60)
        raise
    return server, url


def answer(page):
    """Waits for the page's answer; the message."""
    # While the model runs, the message box shows Gradio's progress timer;
    # the answer is a prediction ("... from ...") or a refusal.
    page.wait_for_function(
        "() => /(\\), from |^Cannot use|^Could not)/.test("
        "document.querySelector('#message').innerText.trim())",
        timeout=120_000,
    )
    return page.locator("#message").inner_text().strip()


def submit(page, audio, text):
    """Uploads ``audio``, types ``text``, presses Classify; the message."""
    page.locator("#speech input[type=file]").set_input_files(audio)
    page.locator("#transcript textarea").fill(text)
    page.locator("#go").click()
    return answer(page)


def shown_code(message):
    """The label code in a prediction message: ``**name** (code, 63%)``
    or, where the name is the code, ``**code** (63%)``.
    """
    # The page renders the Markdown: the asterisks may be gone.
    match = re.match(r"\*{0,2}(.+?)\*{0,2} \((?:([^,\s]+), )?\d+%\)", message)
    if match is None:
        return None
    return match.group(2) or match.group(1)


def exported_examples(model):
    """The ``(file, transcript)`` pairs of the model's examples.csv."""
    import csv

    table = os.path.join(model, "examples.csv")
    if not os.path.exists(table):
        return []
    with open(table, newline="", encoding="utf-8") as f:
        return [
            (os.path.join(model, row["file"]), row["text"])
            for row in csv.DictReader(f)
        ]


def check(args, url):
    """Drives the page; returns a list of failures (empty: all good)."""
    from playwright.sync_api import sync_playwright

    failures = []
    expected = cli_label(args.model, args.audio, args.text)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium, args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(url)

        not_audio = os.path.join(tempfile.mkdtemp(), "notes.wav")
        with open(not_audio, "w") as f:
            f.write("not audio at all\n")
        message = submit(page, not_audio, "")
        print(f"not audio: {message}")
        if "Cannot use this recording" not in message:
            failures.append(
                f"no message for a file that is not audio: {message!r}"
            )
        page.goto(url)  # a clean page for the screenshot

        examples = exported_examples(args.model)
        if not examples:
            failures.append(f"{args.model} has no examples (--examples N)")
        else:
            audio, text = examples[0]
            page.locator("#examples tbody tr").first.click()
            message = answer(page)
            print(f"example: {message}")
            example_label = cli_label(args.model, audio, text)
            if shown_code(message) != example_label:
                failures.append(
                    f"the example shows {message!r}, the CLI says "
                    f"{example_label!r}"
                )
        page.goto(url)

        message = submit(page, args.audio, args.text)
        print(f"page: {message}")
        print(f"CLI label: {expected}")
        if shown_code(message) != expected:
            failures.append(
                f"page shows {message!r}, the CLI says {expected!r}"
            )
        if "%" not in page.locator("#prediction").inner_text():
            failures.append("the probability chart shows no probability")
        page.screenshot(path=args.screenshot, full_page=True)
        print(f"screenshot: {args.screenshot}")
        browser.close()
    return failures


def main():
    """Serves the model, checks the page, stops the server."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="results/demo_model")
    parser.add_argument("--audio", required=True, help="a recording")
    parser.add_argument("--text", required=True, help="its transcript")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--screenshot", default="docs/serve_page.png")
    args = parser.parse_args()

    try:
        server, url = start_server(args.model)
    except RuntimeError as error:
        raise SystemExit(f"check_serve_page: {error}") from None
    try:
        failures = check(args, url)
    finally:
        server.terminate()
        server.wait(timeout=60)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
