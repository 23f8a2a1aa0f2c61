"""Loss normalisation under gradient accumulation: one batch of B and k accumulated batches of B/k give the same
gradients, because the loss is a sum divided by `num_items_in_batch` of the whole accumulated batch. The check is
the shared `TrainerContract`; the other families run it from their Trainer test files."""

from trainer_contract import TrainerContract


class TestARLMTrainerContract(TrainerContract):
    family = "arlm"
