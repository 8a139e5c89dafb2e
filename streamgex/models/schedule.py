"""Learning-rate decay and early stopping, as the paper (2.3.6, 2.4) and D-GEX use them.

- After every epoch, the training error on a fixed monitor subset of the
  training set is compared with the previous epoch's; if it rose, the
  learning rate is multiplied by 0.9, never below 1e-5 (paper 2.3.6: "a small
  subset of the training set is used for this tuning"; D-GEX's code).
- Validation runs every 5 epochs; training stops when the latest validation
  error is worse than the one 25 epochs earlier; the model with the lowest
  validation error is the one kept (2.4).

The ``adam`` recipe (``training.recipes``) validates every epoch and stops
after ``patience`` epochs without a new best (``rule="best"``); its learning
rate follows a hook of its own.

The state is plain data (``to_dict``/``from_dict``) so a checkpoint restores it.
"""

from dataclasses import asdict, dataclass, field


@dataclass
class Schedule:
    learning_rate: float
    min_learning_rate: float = 1e-5
    decay: float = 0.9
    validate_every: int = 5
    patience: int = 25
    #: "earlier": stop when worse than ``patience`` epochs earlier (the paper's);
    #: "best": stop when the best is ``patience`` epochs old.
    rule: str = "earlier"
    train_errors: list = field(default_factory=list)
    validations: list = field(default_factory=list)  # [epoch, error] pairs
    best: list = None  # [epoch, error]

    def end_epoch(self, train_error):
        """Record an epoch's monitor error; returns the learning rate for the next epoch."""
        if self.train_errors and train_error > self.train_errors[-1]:
            self.learning_rate = max(self.learning_rate * self.decay, self.min_learning_rate)
        self.train_errors.append(float(train_error))
        return self.learning_rate

    def wants_validation(self, epoch):
        """Whether epoch ``epoch`` (0-based) ends with a validation: epochs 5, 10, ..."""
        return (epoch + 1) % self.validate_every == 0

    def validated(self, epoch, error):
        """Record a validation; returns ``(is_new_best, stop)``."""
        error = float(error)
        earlier = [e for ep, e in self.validations if ep == epoch - self.patience]
        self.validations.append([epoch, error])
        improved = self.best is None or error < self.best[1]
        if improved:
            self.best = [epoch, error]
        if self.rule == "best":
            return improved, epoch - self.best[0] >= self.patience
        return improved, bool(earlier) and error > earlier[0]

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**data)
