"""Adam that updates only the embedding rows a batch looked up (TensorFlow sparse gradients).

The gradient of an embedding lookup holds only the rows a batch touched; on
TensorFlow it arrives as a `tf.IndexedSlices`. Keras' Adam mixes it into its
dense moment slots, so every step rewrites all `V` rows of the table, of `m`
and of `v`: O(V * d) work for O(rows * d) information. `LazyAdam` keeps such a
gradient sparse and updates the touched rows only.

This module must not change Adam for dense gradients (those are handed to
`keras.optimizers.Adam.update_step` unchanged) nor add optimizer state: it
keeps Adam's slots, config and saved format, so a `.keras` file holds the
same variables as with Adam. TensorFlow is imported only when a sparse
gradient arrives, which happens on the TensorFlow backend only.
"""

import keras
from keras import ops

from keras_lowrank import _keras_private


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LazyAdam(keras.optimizers.Adam):
    """Adam whose update of a sparse gradient touches only the rows it holds.

    For a dense gradient this is exactly `keras.optimizers.Adam`. For a
    gradient that is a `tf.IndexedSlices` (on the TensorFlow backend, the
    gradient of an embedding gather such as `keras.layers.Embedding`'s or the
    lookup factor of `keras_lowrank.LowRankEmbedding`), the values of
    duplicate indices are summed first, and then only the rows `i` that
    appear in it are updated, with the step `t` counted by `iterations`:

    .. math::

        m_i \\leftarrow m_i + (1 - \\beta_1)(g_i - m_i), \\quad
        v_i \\leftarrow v_i + (1 - \\beta_2)(g_i^2 - v_i), \\quad
        w_i \\leftarrow w_i - \\eta \\frac{\\sqrt{1 - \\beta_2^t}}{1 - \\beta_1^t}
        \\frac{m_i}{\\sqrt{v_i} + \\epsilon}.

    The rows a batch did not touch keep their weights *and their moments*.
    That is where the semantics differ from Adam: Adam decays the moments of
    an untouched row (its gradient is zero) and keeps moving the row with its
    momentum; `LazyAdam` does neither, like TF Addons' `LazyAdam`. In
    exchange a step costs O(rows in the batch * d) instead of O(V * d) for
    the table. Rows that a batch looks up but whose gradient is zero (the
    padding id under a mask) count as touched: their moments decay.

    Where the gradient is dense, the update is Adam's: on JAX and PyTorch
    (whose embedding gradients are dense tensors), for every non-embedding
    weight, and on TensorFlow wherever Keras densifies the gradient before
    the update (loss scaling of a `LossScaleOptimizer`, gradient
    accumulation). `weight_decay` and `use_ema` are applied by Keras to the
    whole variable at every step, sparse or not, so they keep their O(V * d)
    cost. `amsgrad=True` keeps `max(v_hat_i, v_i)` of the touched rows only.
    On PyTorch, `keras.optimizers.Adam` itself is swapped by Keras for a
    fused (`torch._foreach_*`) implementation that a subclass does not get:
    there `LazyAdam` computes the same update with Keras' generic Adam,
    which is slower; prefer `keras.optimizers.Adam` on PyTorch and JAX.

    `LazyAdam` takes the arguments of `keras.optimizers.Adam`
    (`learning_rate`, `beta_1`, `beta_2`, `epsilon`, `amsgrad` and the
    common optimizer arguments) with the same meaning; its config and saved
    variables are Adam's.

    Example:

    ```python
    import keras
    import keras_lowrank

    model = keras.Sequential([
        keras.Input((8,), dtype="int32"),
        keras.layers.Embedding(100_000, 64),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2),
    ])
    model.compile(
        optimizer=keras_lowrank.training.LazyAdam(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ```

    References:
        - [Kingma and Ba, 2014](https://arxiv.org/abs/1412.6980): Adam.
        - [TF Addons `LazyAdam`](https://www.tensorflow.org/addons/api_docs/python/tfa/optimizers/LazyAdam):
          the same lazy update of sparse rows, for Keras 2.
    """

    def update_step(self, gradient, variable, learning_rate):
        """Adam's update, restricted to the gradient's rows when it is sparse."""
        tf = _tensorflow_if_sparse(gradient)
        if tf is None:
            return super().update_step(gradient, variable, learning_rate)
        return self._sparse_update_step(tf, gradient, variable, learning_rate)

    def _sparse_update_step(self, tf, gradient, variable, learning_rate):
        dtype = variable.dtype
        # A batch repeats ids; the gradient of a row is the sum over its
        # repeats, so each touched row is updated once with that sum.
        indices, positions = tf.unique(gradient.indices)
        gradient = tf.math.unsorted_segment_sum(
            gradient.values, positions, tf.shape(indices)[0]
        )
        gradient = ops.cast(gradient, dtype)
        lr = ops.cast(learning_rate, dtype)
        local_step = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, dtype), local_step)
        beta_2_power = ops.power(ops.cast(self.beta_2, dtype), local_step)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)

        m, v, v_hat = _keras_private.adam_slots(self, variable)
        # The same operations in the same order as Adam.update_step, on the
        # gathered rows, so a row touched once gets Adam's update bit for bit.
        m_rows = _gather(tf, m, indices)
        m_rows = ops.add(m_rows, ops.multiply(ops.subtract(gradient, m_rows), 1 - self.beta_1))
        v_rows = _gather(tf, v, indices)
        v_rows = ops.add(
            v_rows, ops.multiply(ops.subtract(ops.square(gradient), v_rows), 1 - self.beta_2)
        )
        # The TensorFlow optimizer's `assign*` scatter an `IndexedSlices`
        # into the rows it names and leave every other row untouched.
        self.assign(m, tf.IndexedSlices(m_rows, indices))
        self.assign(v, tf.IndexedSlices(v_rows, indices))
        if v_hat is not None:
            v_rows = ops.maximum(_gather(tf, v_hat, indices), v_rows)
            self.assign(v_hat, tf.IndexedSlices(v_rows, indices))
        step = ops.divide(ops.multiply(m_rows, alpha), ops.add(ops.sqrt(v_rows), self.epsilon))
        self.assign_sub(variable, tf.IndexedSlices(step, indices))


def _tensorflow_if_sparse(gradient):
    """The `tensorflow` module if `gradient` is a `tf.IndexedSlices`, else `None`."""
    # Only the TensorFlow backend produces `IndexedSlices`; checking the
    # backend first keeps TensorFlow unimported on JAX and PyTorch.
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf if isinstance(gradient, tf.IndexedSlices) else None


def _gather(tf, variable, indices):
    """Rows `indices` of a variable, read without reading the whole table."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    # `tf.gather` of a resource variable is a sparse read of those rows.
    return tf.gather(variable, indices)
