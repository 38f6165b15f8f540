"""Clip-classification datasets for stage 1, one file per dataset in its official layout."""
