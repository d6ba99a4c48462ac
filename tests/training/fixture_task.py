"""A small regression task for testing the training stack itself (not a product experiment).

Points x in [-1, 1]^3 are labelled with f(x) = sum_j exp(-|x - c_j|^2 / (2 s^2)) for fixed centres
c_j; an MLP with dropout learns f from shuffled mini-batches, so that resuming exercises the data
order, dropout and optimizer state. ``nan_from_epoch`` makes the loss NaN from that epoch on;
``worse_from_epoch`` adds 1 to the validation metrics from that epoch on, so the monitored metric
gets worse in the last epochs (the best checkpoint is then older than the last one).
"""

from __future__ import annotations

import os
import signal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from gdl.tasks.media import log_point_cloud


def bumps(x: torch.Tensor, generator: torch.Generator, count: int = 4, scale: float = 0.4) -> torch.Tensor:
    centres = torch.rand(count, 3, generator=generator) * 2 - 1
    return torch.exp(-torch.cdist(x, centres).square() / (2 * scale**2)).sum(dim=1, keepdim=True)


class BumpsData(pl.LightningDataModule):
    def __init__(self, num_train: int = 1024, num_val: int = 256, num_test: int = 256, batch_size: int = 64, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        x = torch.rand(num_train + num_val + num_test, 3, generator=generator) * 2 - 1
        y = bumps(x, generator)
        sizes = [num_train, num_val, num_test]
        self.splits = [TensorDataset(xs, ys) for xs, ys in zip(x.split(sizes), y.split(sizes))]
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.splits[0], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits[1], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.splits[2], batch_size=self.batch_size)


class MLP(torch.nn.Sequential):
    def __init__(self, hidden: int = 32, dropout: float = 0.1):
        super().__init__(
            torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 1)
        )


class BumpsRegression(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, lr: float = 1e-2, weight_decay: float = 0.0, nan_from_epoch: int | None = None, worse_from_epoch: int | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        if self.hparams.nan_from_epoch is not None and self.current_epoch >= self.hparams.nan_from_epoch:
            loss = loss * float("nan")
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def _evaluate(self, batch, stage: str):
        x, y = batch
        prediction = self.model(x)
        loss = torch.nn.functional.mse_loss(prediction, y)
        penalty = float(stage == "val" and self.hparams.worse_from_epoch is not None and self.current_epoch >= self.hparams.worse_from_epoch)
        self.log(f"{stage}/loss", loss + penalty)
        self.log(f"{stage}/mae", (prediction - y).abs().mean() + penalty)
        return prediction

    def validation_step(self, batch, batch_idx):
        prediction = self._evaluate(batch, "val")
        if batch_idx == 0:
            log_point_cloud(self, "val/prediction", batch[0], prediction[:, 0])

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class KillAtEpoch(pl.Callback):
    """Kill the process (SIGKILL, no clean-up) when epoch ``epoch`` starts: a crash after ``epoch`` epochs."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
