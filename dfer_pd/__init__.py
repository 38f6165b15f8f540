"""dfer-pd: Parkinson's disease screening from dynamic facial expressions (CLIP intensities + residual LSTM)."""

__version__ = "0.1.0"
