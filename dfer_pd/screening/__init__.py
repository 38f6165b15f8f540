"""Screening one person: the face path, quality checks, the verdict and its report."""
