"""fedseg's nnU-Net trainers: nnU-Net's own trainer with the partial-label (marginal) loss.

:class:`nnUNetTrainerMarginal` is nnU-Net's ``nnUNetTrainer`` (its network, augmentation,
deep-supervision weights, optimizer and learning-rate schedule) whose Dice + cross-entropy
loss is marginal for the cases that lack labels
(:class:`training.nnunet.marginal_loss.MarginalDCandCELoss`). Which labels a case lacks comes
from ``dataset.json`` (the one the trainer is given, the preprocessed folder's for nnU-Net's
own ``nnUNetv2_train``): :func:`with_missing_labels` writes them into its ``fedseg`` entry,
which nnU-Net itself does not read::

    "fedseg": {"missing_labels": {"<case identifier>": ["kidney_left", ...], ...}, ...}

A case not listed lacks nothing; a dataset.json without the entry trains exactly as
``nnUNetTrainer``. The label maps of such cases keep background 0 where the missing organs may
be (no ignore label). nnU-Net's own validation Dice (``nnUNetv2_train`` without
``--disable_checkpointing``) still scores those cases against background, so it understates
them; the federation validates the aggregated model instead.

:func:`training.nnunet.network.find_trainer_class` finds the trainers of this module by name,
so a checkpoint whose ``trainer_name`` is ``nnUNetTrainerMarginal`` imports.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from training.nnunet.marginal_loss import MarginalDCandCELoss, missing_in_target

#: Key of the ``fedseg`` entry of dataset.json listing each partially contoured case's labels.
MISSING_LABELS = "missing_labels"

__all__ = ["MISSING_LABELS", "missing_labels", "nnUNetTrainerMarginal", "with_missing_labels"]


def with_missing_labels(
    dataset: Mapping[str, Any], missing: Mapping[str, Collection[str]]
) -> dict[str, Any]:
    """``dataset`` (a dataset.json) listing, per case, the label names the case lacks.

    Cases with nothing missing are left out. Raises ``ValueError`` for a name that is not one
    of dataset.json's labels (background and ignore are not labels a case can lack).
    """
    listed = {case: sorted(names) for case, names in missing.items() if names}
    fedseg = {**dict(dataset.get("fedseg", {})), MISSING_LABELS: listed}
    out = {**dataset, "fedseg": fedseg}
    missing_labels(out)  # validates the names
    return out


def missing_labels(dataset: Mapping[str, Any]) -> dict[str, frozenset[int]]:
    """The output channels each listed case lacks, from dataset.json's ``fedseg`` entry.

    Raises
    ------
    ValueError
        If a listed name is background, ignore or not one of dataset.json's labels.
    """
    labels = {
        str(k): int(v) for k, v in dataset["labels"].items() if k not in ("background", "ignore")
    }
    listed = dict(dataset.get("fedseg", {}).get(MISSING_LABELS, {}))
    out: dict[str, frozenset[int]] = {}
    for case, names in listed.items():
        unknown = sorted(str(n) for n in names if n not in labels)
        if unknown:
            raise ValueError(
                f"dataset.json fedseg.{MISSING_LABELS}.{case}: {unknown} are not labels of the "
                f"dataset's foreground ({sorted(labels)})"
            )
        out[str(case)] = frozenset(labels[n] for n in names)
    return out


class nnUNetTrainerMarginal(nnUNetTrainer):  # noqa: N801 (nnU-Net's class naming)
    """``nnUNetTrainer`` whose loss is marginal over each case's missing labels."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008 (nnU-Net's signature)
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.missing_labels = missing_labels(dataset_json)
        if self.missing_labels and self.label_manager.has_regions:
            raise ValueError(
                "dataset.json lists missing labels but trains regions; the marginal loss "
                "merges softmax classes: train labels, or list no missing labels"
            )
        self.marginal_loss: MarginalDCandCELoss | None = None

    def _build_loss(self) -> torch.nn.Module:
        """nnU-Net's loss (deep-supervision weights included) with its DC_and_CE marginalised."""
        loss = super()._build_loss()
        if self.label_manager.has_regions:
            return loss  # regions: nnU-Net's loss as is (no missing labels, checked above)
        outputs = self.label_manager.num_segmentation_heads
        if isinstance(loss, DeepSupervisionWrapper):
            loss.loss = self.marginal_loss = MarginalDCandCELoss(loss.loss, outputs)
            return loss
        self.marginal_loss = MarginalDCandCELoss(loss, outputs)
        return self.marginal_loss

    def _set_batch(self, batch: dict) -> None:
        """Tell the loss which labels each case of ``batch`` lacks; refuse contradictions."""
        if self.marginal_loss is None:
            return
        missing = tuple(self.missing_labels.get(str(k), frozenset()) for k in batch["keys"])
        target = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
        contradictions = missing_in_target(target, missing)
        if contradictions:
            index, values = contradictions[0]
            raise ValueError(
                f"case {batch['keys'][index]}: its label map holds labels {values} that "
                f"dataset.json's fedseg.{MISSING_LABELS} lists as missing; fix either"
            )
        self.marginal_loss.missing = missing

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's training step, with the batch's missing labels given to the loss."""
        self._set_batch(batch)
        try:
            return super().train_step(batch)
        finally:
            if self.marginal_loss is not None:
                self.marginal_loss.missing = None

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step, with the batch's missing labels given to the loss."""
        self._set_batch(batch)
        try:
            return super().validation_step(batch)
        finally:
            if self.marginal_loss is not None:
                self.marginal_loss.missing = None
