"""What ``train.py`` and ``eval.py`` run: ``run`` (build, train, test, report), ``config`` (resolvers and
checks), ``errors``, ``checkpoints``, ``callbacks`` (progress, NaN stop) and ``output`` (quiet libraries, W&B)."""
