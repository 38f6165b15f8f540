"""Stage 1: the CLIP expression-intensity network, its training, its clip datasets, and scoring videos into intensities."""
