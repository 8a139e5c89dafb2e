"""The E-MLP fine-tuned end to end: landmarks -> E-MLP -> decoder -> targets.

The paper trains the E-MLP on codes and decodes its output, and concludes
that its error is dominated by the autoencoder's reconstruction (section 4).
This kind starts from a finished E-MLP run and its autoencoder's decoder,
stacks them into one network and trains it on the target genes themselves
(MSE, like every network here), so the E-MLP's errors and the decoder's are
corrected together; ``freeze_decoder`` keeps the decoder as trained and moves
only the E-MLP. It reports, beside its own error, the autoencoder's
reconstruction floor it started from (``evaluate``'s ``reconstruction``).

Its start is a finished model, so it is validated before the first step and
kept unless fine-tuning improves on it. ``linear_skip`` adds a linear map of the
landmarks to the targets, started at least squares' solution for what the
decoded E-MLP leaves (its residuals on the training profiles): the start then
predicts the decoded E-MLP plus the best linear correction of it.
"""

from dataclasses import dataclass

from ..config import positive
from ..training.recipes import ADAM_RATE
from . import emlp
from .registry import ModelKind, SGDOptions, register, save_keras

#: A tenth of each recipe's from-scratch E-MLP rate: the weights start trained.
LEARNING_RATE = {"paper": emlp.LEARNING_RATE / 10, "adam": ADAM_RATE / 10}


@dataclass(frozen=True)
class FinetuneOptions(SGDOptions):
    """``learning_rate`` 0: a tenth of the recipe's (``LEARNING_RATE``); ``linear_skip``: a
    linear map of the landmarks to the targets beside the decoded E-MLP, started at least
    squares' solution for its residuals."""

    max_epochs: int = positive(50)
    freeze_decoder: bool = False
    linear_skip: bool = False


class Finetune(ModelKind):
    """A finished E-MLP run and its decoder, trained jointly on the targets."""

    name = "emlp_tuned"
    title = "E-MLP fine-tuned"
    Options = FinetuneOptions
    role = "proposed"
    starts_from = "emlp"
    curve_label = " (fine-tuned on targets)"
    FILE = "emlp_tuned.keras"

    def train(self, job):
        import keras

        from ..evaluation.predictor import load_keras
        from ..training.loop import make_predict
        from .emlp import Emlp

        options = job.options
        coder = Emlp.autoencoder_of(job.source)
        job.setup_backend()
        start = load_keras(job.source.best(Emlp.FILE))
        decoder = load_keras(coder.best(coder.kind.DECODER))
        decoder.trainable = not options.freeze_decoder
        inputs = keras.Input(start.input_shape[1:], name="landmarks")
        decoded = keras.Model(inputs, decoder(start(inputs)), name="emlp_decoded")
        streams = job.streams(job.landmarks, job.targets)
        model = decoded
        if options.linear_skip:
            skip = keras.layers.Dense(len(job.targets), name="targets_linear", dtype="float32")
            model = keras.Model(inputs, keras.layers.Add(name="targets", dtype="float32")(
                [decoded(inputs), skip(inputs)]), name="emlp_tuned")
            coefficients = job.least_squares(streams[0], explained=make_predict(decoded))
            if coefficients is not None:
                skip.kernel.assign(coefficients[:-1].astype("float32"))
                skip.bias.assign(coefficients[-1].astype("float32"))
        rate = options.learning_rate or LEARNING_RATE[options.recipe]
        job.fit(model, streams,
                paper_optimizer=lambda: emlp.emlp_optimizer(rate), learning_rate=rate,
                what="this fine-tuned E-MLP",
                save_best=lambda: save_keras(model, job.run.best(self.FILE)),
                start_validated=True)

    def load(self, run):
        from ..evaluation.predictor import Predictor, gene_keys, load_keras, side_by_side
        from .emlp import Emlp, round_trip

        landmarks, targets = gene_keys(run)
        return Predictor(self, run, landmarks, targets,
                         predict=side_by_side([load_keras(run.best(self.FILE))]),
                         reconstruct=round_trip(Emlp.autoencoder_of(run.source)))

    def network(self, run):
        from ..evaluation.predictor import load_keras

        return load_keras(run.best(self.FILE))

    def model_files(self, run):
        from .emlp import Emlp

        return [run.best(self.FILE), *Emlp().model_files(run.source)]

    def describe(self, options):
        return "E-MLP + decoder" + (" (decoder frozen)" if options.freeze_decoder else "") + \
            (" + linear skip" if options.linear_skip else "")


register(Finetune)
