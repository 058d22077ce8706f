"""Training pipeline for the latent neural PDE surrogate on 1D Burgers data."""
