"""Keras layers of streamgex's own (imported only when a model is built)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable("streamgex")
class TiedDense(keras.layers.Layer):
    """A dense layer whose kernel is another Dense layer's kernel, transposed."""

    def __init__(self, tied_to, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.tied_to = tied_to
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        units = self.tied_to.kernel.shape[0]
        self.bias = self.add_weight(shape=(units,), initializer="zeros", name="bias")

    def call(self, inputs):
        # x K^T taken as (K x^T)^T: no kernel-sized transposed copy in each step, and products
        # TensorFlow runs at the forward's rate in both directions (training/backward.py)
        product = ops.transpose(ops.matmul(self.tied_to.kernel, ops.transpose(inputs)))
        return self.activation(product + self.bias)
