#!/usr/bin/env python3
"""Runs this recipe's train.py over speaker-pair folds and seeds, then
tabulates (see speechbrain_turbo.cross_validate; arguments after -- go to
train.py).

    > python cross_validate.py hparams/small.yaml --name turbo --folds 4 \
        --seeds 1 2 3

Authors
 * speechbrain-turbo contributors
"""

import os

from speechbrain_turbo.cross_validate import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(os.path.join(here, "train.py"), fold_key="test_fold")
