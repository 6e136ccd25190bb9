"""Quality control: a model's intended use before inference, each structure's plausibility after.

- :mod:`service.qc.enum`: the vocabulary (body regions, check names, statuses, policy);
- :mod:`service.qc.intended_use`: the manifest's ``intended_use`` block;
- :mod:`service.qc.priors`: the per-label ``qc`` block of the label tables (anatomy priors);
- :mod:`service.qc.body`: a body mask and what the field of view contains, from the image;
- :mod:`service.qc.applicability`: is a series inside a model's intended use;
- :mod:`service.qc.structures`: per-structure checks → ``pass`` / ``warn`` / ``fail``;
- :mod:`service.qc.report`: a series' QC outcome and what the delivery policy withholds.
"""
