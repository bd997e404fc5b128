"""Does the disciplined search beat Optuna + ASHA, random search + ASHA and the fastai habit on MNIST-1D?

The benchmark suite (``bench/suite.py``) on its first task only, ``mnist1d-cnn``: the embedded
preset (cnn1d, BatchNorm, SGD), two trials at a time, one CPU and one torch thread each. The four
contenders (tunekit's whole search, Optuna + ASHA, random search + ASHA, fastai's ``lr_find`` →
``valley`` → ``fit_one_cycle``) each choose on the validation split; every choice is retrained 30
epochs × 3 seeds and reported on the test split. See ``bench/suite.py`` for the details.

    python bench/search_efficiency.py [--quick] [--json] [--out DIR] [--contenders a,b]

``--out DIR`` writes ``search_efficiency.{json,md,png}``.
"""

from __future__ import annotations

import sys

from suite import main  # bench/ is the script's folder

if __name__ == "__main__":
    main(["--tasks", "mnist1d-cnn", *sys.argv[1:]], stem="search_efficiency")
