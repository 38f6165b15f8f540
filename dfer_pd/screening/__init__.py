"""Screening one person: the verdict (or INCONCLUSIVE), its report and the local web page."""
