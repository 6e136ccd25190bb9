"""The job queue (row claims under leases) and the worker that runs segmentation jobs."""
