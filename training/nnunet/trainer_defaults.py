"""nnU-Net's training schedule: the defaults of its ``nnUNetTrainer`` (nnunetv2 2.x).

Read from ``nnUNetTrainer.__init__`` (``initial_lr``, ``num_iterations_per_epoch``) and kept
here without importing nnU-Net, so that run settings can default to them cheaply;
``tests/federation/nnunet/test_local_round.py`` checks them against the installed trainer.
"""

from __future__ import annotations

#: ``nnUNetTrainer.initial_lr``: SGD (Nesterov, momentum 0.99) with poly decay from this.
INITIAL_LR = 1e-2
#: ``nnUNetTrainer.num_iterations_per_epoch``: training iterations (batches) of one epoch.
ITERATIONS_PER_EPOCH = 250
