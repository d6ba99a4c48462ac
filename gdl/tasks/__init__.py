"""LightningModules: losses, metrics and logging around the models."""
