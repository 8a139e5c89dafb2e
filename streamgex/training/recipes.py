"""How a network is optimized: the paper's recipe, or one that converges reliably.

Every network kind (``[train.<model>] recipe = ...``) trains by one of:

``paper``
    The kind's published optimizer and rate (E-MLP and autoencoder: Nesterov
    momentum 0.9, 5e-4, paper 2.3.3 / 2.3.6; D-GEX: momentum 0.5, 3e-4, and
    its 3x rate after the first layer), the rate x0.9 whenever the monitor
    error rose (floor 1e-5), validation every 5 epochs, stop when worse than
    25 epochs earlier, the best model kept (2.4).
``adam``
    AdamW (Loshchilov & Hutter 2019) at 1e-3, the learning rate warmed up
    linearly over the first epoch, then cosine-annealed to 0 at ``max_epochs``;
    the global gradient norm clipped at 1; validation every epoch, stop after
    ``patience`` epochs without a new best, the best model kept. Chosen by the
    diagnosis in tools/README.md ("Training recipes"): from output weights of
    +-1e-4, momentum SGD at the paper's rates takes hundreds of epochs to
    grow even the linear part of the map, and is still short of least
    squares when its epochs run out; Adam leaves that plateau in a few epochs.
"""

from ..models.schedule import Schedule

ADAM_RATE = 1e-3
CLIP_NORM = 1.0
WARMUP_EPOCHS = 1
NAMES = ("paper", "adam")


class Paper:
    name = "paper"
    gradient_scales = True  # D-GEX's per-layer rates belong to its SGD
    optimizer_slots = 1  # momentum

    def optimizer(self, options, paper_optimizer, rate=None):
        return paper_optimizer()

    def schedule(self, optimizer, options):
        return Schedule(float(optimizer.learning_rate.numpy()))

    def rate_hook(self, schedule, options, steps_per_epoch):
        from .hooks import LearningRateDecay

        return LearningRateDecay(schedule)


class Adam:
    name = "adam"
    gradient_scales = False  # Adam normalizes each weight's step; clipping sees raw gradients
    optimizer_slots = 2  # first and second moments

    def optimizer(self, options, paper_optimizer, rate=None):
        import keras

        return keras.optimizers.AdamW(learning_rate=options.learning_rate or rate or ADAM_RATE,
                                      weight_decay=options.weight_decay,
                                      global_clipnorm=CLIP_NORM)

    def schedule(self, optimizer, options):
        return Schedule(float(optimizer.learning_rate.numpy()), validate_every=1,
                        patience=options.patience, rule="best")

    def rate_hook(self, schedule, options, steps_per_epoch):
        from .hooks import WarmupCosine

        return WarmupCosine(schedule.learning_rate,
                            warmup_steps=WARMUP_EPOCHS * steps_per_epoch,
                            total_steps=options.max_epochs * steps_per_epoch)


RECIPES = {recipe.name: recipe for recipe in (Paper(), Adam())}


def get(name):
    """The recipe called ``name`` (``paper`` or ``adam``)."""
    return RECIPES[name]
