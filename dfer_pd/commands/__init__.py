"""Thin command modules behind the `dfer-pd` console script."""
