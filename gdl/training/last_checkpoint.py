"""``last.ckpt``: the state after the latest epoch, written every epoch whatever the monitored metric did.

Lightning 2.6's ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only in an epoch where it
also saves a top-k checkpoint, i.e. when the monitored metric improves: after a worsening epoch
``last.ckpt`` is an older epoch, so resuming from it retrains epochs and evaluating it tests stale
weights. This callback is a ``ModelCheckpoint`` without a monitor that keeps exactly one file,
``last.ckpt``, overwritten at the same points of the loop as the best checkpoint (after validation),
so resuming from it continues with the next epoch.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Write ``<dirpath>/last.ckpt`` after every ``every_n_epochs`` epochs, replacing the previous one."""

    def __init__(self, dirpath, every_n_epochs: int = 1):
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_last=False,
            every_n_epochs=every_n_epochs,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name="last", every_n_epochs=self._every_n_epochs)

    def load_state_dict(self, state_dict) -> None:
        """Nothing to restore: a resumed run writes its own ``last.ckpt`` in its own folder."""

    @property
    def path(self) -> str:
        """The file written last ('' before the first save)."""
        return self.best_model_path
