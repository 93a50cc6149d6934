#!/usr/bin/env python3
"""Runs this recipe's train.py over prepared folds and seeds, then
tabulates (see speechbrain_turbo.cross_validate; arguments after -- go to
train.py). ``--manifests`` is a folder holding ``fold<k>/train.csv``,
``valid.csv`` and ``test.csv`` for each fold, as the corpus preparations
write them (e.g. recipes/EmoDB/turbo/emodb_prepare.py).

    > python cross_validate.py hparams/whisper.yaml --name turbo \
        --manifests folds --folds 1 2 3 4 5 --seeds 1 -- \
        --data_folder=/path/to/corpus

Authors
 * speechbrain-turbo contributors
"""

import os

from speechbrain_turbo.cross_validate import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(os.path.join(here, "train.py"))
