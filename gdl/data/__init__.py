"""Readers, datasets, LightningDataModules and synthetic deformations."""
