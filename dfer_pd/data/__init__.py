"""Decoding, sampling, datasets, data modules and the synthetic data world."""
