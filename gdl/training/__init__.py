"""Utilities behind ``train.py`` and ``eval.py``: config checks, checkpoints, seeding, logging set-up."""
