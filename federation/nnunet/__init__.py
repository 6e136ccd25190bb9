"""Federated nnU-Net: the pooled fingerprint the sites plan from."""
