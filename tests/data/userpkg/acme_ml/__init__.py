"""acme_ml: a small user project tunekit searches without knowing it (no tunekit import, not installed).

Its factories are named by import strings in ``wine.yaml`` and ``diabetes.yaml``; tunekit ships this
folder to every Ray worker with ``--working-dir``.
"""
