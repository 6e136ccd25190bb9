"""nnU-Net v2 models in the service: the recipe a bundle carries and its numpy executor."""
