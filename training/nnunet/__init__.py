"""Import trained nnU-Net v2 models as fedseg bundles (training layer: torch + nnU-Net)."""
