"""Received and produced DICOM instances on disk, under content-addressed paths."""
