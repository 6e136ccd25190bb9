import pytest
import torch

from training.losses import LabelSupervision, MarginalLoss

LIVER, SPLEEN, KIDNEY = 1, 2, 3
NUM_CLASSES = 4


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, NUM_CLASSES, 6, 6, 6, generator=generator)
    target = torch.zeros(1, 1, 6, 6, 6, dtype=torch.long)
    target[0, 0, 1:3, 1:3, 1:3] = LIVER
    target[0, 0, 4:6, 4:6, 4:6] = SPLEEN
    return logits, target


def _probability_gradient(supervision: LabelSupervision) -> torch.Tensor:
    logits, target = _case()
    probabilities = torch.softmax(logits, dim=1).requires_grad_(True)
    loss = MarginalLoss(NUM_CLASSES).from_probabilities(probabilities, target, [supervision])
    loss.backward()
    assert probabilities.grad is not None
    return probabilities.grad[0]


def test_unannotated_organ_gets_no_background_gradient() -> None:
    # The site annotates liver and spleen; its background may hide a kidney.
    grad = _probability_gradient(LabelSupervision.of([LIVER, SPLEEN]))
    background = _case()[1][0, 0] == 0
    # Exactly the same gradient on kidney and background: nothing moves probability from the
    # kidney to background, so the kidney is never taught to be background.
    assert torch.equal(grad[KIDNEY], grad[0])
    assert grad[0][background].abs().min() > 0  # background itself is supervised


def test_fully_supervised_loss_does_push_kidney_to_background() -> None:
    # The control: treating the kidney as annotated (and absent) separates the two gradients,
    # which is what the marginal loss must avoid for a site that did not annotate it.
    grad = _probability_gradient(LabelSupervision.full(NUM_CLASSES))
    background = _case()[1][0, 0] == 0
    assert (grad[KIDNEY][background] > grad[0][background]).all()


def test_loss_ignores_split_between_background_and_unannotated() -> None:
    logits, target = _case()
    loss = MarginalLoss(NUM_CLASSES)
    supervision = [LabelSupervision.of([LIVER, SPLEEN])]
    moved = logits.clone()
    # Move probability from background to kidney keeping exp(z0) + exp(z3) fixed.
    total = torch.logaddexp(logits[:, 0], logits[:, KIDNEY])
    moved[:, KIDNEY] = total + torch.log(torch.tensor(0.9))
    moved[:, 0] = total + torch.log(torch.tensor(0.1))
    assert loss(moved, target, supervision) == pytest.approx(
        loss(logits, target, supervision).item(), rel=1e-5
    )


def test_exclusion_pushes_known_absent_class_down() -> None:
    grad = _probability_gradient(LabelSupervision.of([LIVER, SPLEEN], absent=[KIDNEY]))
    assert (grad[KIDNEY] > grad[0]).all()


def test_unannotated_label_in_target_is_refused() -> None:
    logits, target = _case()
    with pytest.raises(ValueError, match="does not annotate"):
        MarginalLoss(NUM_CLASSES)(logits, target, [LabelSupervision.of([LIVER])])
    with pytest.raises(ValueError, match="both annotated and absent"):
        LabelSupervision.of([LIVER], absent=[LIVER])
