"""The HTTP API of the inference server (FastAPI): DICOMweb, jobs, models, dashboard."""
