"""Knowledge distillation for the fine-tune of a compressed classifier.

After factorization, the compressed model (the student) is fine-tuned to
recover accuracy; matching the softened predictions of the uncompressed model
(the teacher) as well as the hard labels recovers more than the labels alone
(Hinton et al., 2015). This module provides the loss and a `keras.Model`
wrapper that adds it to any compiled loss inside the ordinary
`compile` / `fit` / `evaluate` loop.

It must not modify the student's architecture, train the teacher, or depend
on the rest of `keras_lowrank`; it uses `keras.ops` only.
"""

import math
import numbers

import keras
from keras import ops

_TEACHER_OUTPUTS = ("logits", "probabilities")


def distillation_loss(
    teacher_logits, student_logits, temperature, *, sample_weight=None
):
    """Temperature-scaled KL divergence from the teacher to the student.

    Both sets of logits are divided by the temperature :math:`T` and turned
    into distributions with a softmax over the last axis; the loss is

    .. math::

        T^2 \\, \\mathrm{KL}\\left(\\mathrm{softmax}(z_t / T) \\,\\|\\,
        \\mathrm{softmax}(z_s / T)\\right),

    averaged over the examples (every axis but the last). The factor
    :math:`T^2` keeps the size of the gradients independent of :math:`T`
    (Hinton et al., 2015), so the loss can be mixed with a hard-label loss
    with a fixed weight. Computed in float32 with log-softmax, so saturated
    logits do not produce `inf` or `nan`. Gradients flow into both arguments;
    stop them on the teacher side when the teacher must not learn.

    Example:

    ```python
    import numpy as np
    from keras_lowrank.training import distillation_loss

    teacher = np.array([[2.0, 0.5, -1.0]])
    student = np.array([[1.0, 1.0, 0.0]])
    loss = distillation_loss(teacher, student, temperature=2.0)
    ```

    Args:
        teacher_logits: Tensor of shape `(..., num_classes)`, the teacher's
            logits (pre-softmax scores).
        student_logits: Tensor of the same shape, the student's logits.
        temperature: Positive float, the softening temperature :math:`T`.
        sample_weight: Optional tensor of the shape of the logits without
            their last axis; the per-example losses are weighted by it and
            the sum divided by the number of examples (Keras'
            `"sum_over_batch_size"` reduction).

    Returns:
        A float32 scalar tensor, >= 0, equal to 0 when the two tempered
        distributions agree.

    References:
        - [Hinton et al., 2015. Distilling the Knowledge in a Neural
          Network](https://arxiv.org/abs/1503.02531)
    """
    _check_temperature(temperature)
    per_example = _tempered_kl(teacher_logits, student_logits, temperature)
    if sample_weight is not None:
        per_example = per_example * ops.cast(sample_weight, per_example.dtype)
    return ops.mean(per_example) * (float(temperature) ** 2)


class Distiller(keras.Model):
    """Trains a student model on hard labels and on a frozen teacher's logits.

    `Distiller` wraps a student and a teacher into one `keras.Model` that
    fits like any other. Its `call` runs the student only, so predictions,
    compiled metrics and `evaluate` all describe the student. Its loss is

    .. math::

        (1 - \\alpha) \\, L(y, z_s) + \\alpha \\, T^2 \\,
        \\mathrm{KL}\\left(\\mathrm{softmax}(z_t / T) \\,\\|\\,
        \\mathrm{softmax}(z_s / T)\\right) + \\text{regularization},

    where :math:`L` is the loss given to `compile` (with its sample weights),
    :math:`z_s` and :math:`z_t` are the student's and the teacher's outputs
    on the same inputs, :math:`T` is `temperature` and :math:`\\alpha` is
    `alpha` (see `keras_lowrank.training.distillation_loss`). Regularization
    and `add_loss` terms of the student are added unweighted. The
    distillation term (:math:`T^2 \\mathrm{KL}`, before the weight
    :math:`\\alpha`) is also reported as the metric `distillation_loss` in
    `fit` and `evaluate` logs; `loss` is the total.

    Both models must output logits (no final softmax), which is what
    `keras_lowrank.models` builds and what `from_logits=True` losses expect.
    A teacher that ends in a softmax can be used with
    `teacher_outputs="probabilities"`: its log-probabilities then serve as
    logits, which gives exactly the same tempered distribution. The student
    must output logits in every case: compile it with a `from_logits=True`
    loss.

    The teacher is frozen (`teacher.trainable` is set to `False`, on the
    object passed in), always run in inference mode (`training=False`, so
    dropout is off and batch-norm statistics are not updated), and no
    gradient flows into it. With `alpha=0` the teacher is never run and the
    loss is exactly the compiled loss.

    `Distiller` is not serializable: saving it raises an error. Save the
    student, which is the model being trained: `distiller.student.save(...)`.

    Why not `keras.distillation.Distiller` (Keras >= 3.12) with
    `LogitsDistillation`: it covers the temperature, the weight and the
    frozen teacher, but as of Keras 3.15 its `compute_loss` ignores
    `sample_weight` (documented "currently unused"), drops the student's
    regularization and `add_loss` terms, applies the compiled loss per
    output without `loss_weights`, and takes the KL of clipped softmax
    probabilities rather than of log-softmaxes (saturated logits lose
    precision); it has no teacher that outputs probabilities. `compress()`
    fine-tunes with class and sample weights and regularized students, so
    this class stays until Keras' covers those; it uses `keras.ops` only and
    runs on every backend.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_lowrank.training import Distiller

    def classifier(width):
        return keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(width, activation="relu"),
             keras.layers.Dense(3)]
        )

    teacher, student = classifier(64), classifier(4)
    x = np.random.rand(64, 8).astype("float32")
    y = np.random.randint(0, 3, size=64)
    distiller = Distiller(student, teacher, temperature=2.0, alpha=0.5)
    distiller.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.student.save("student.keras")
    ```

    Args:
        student: The `keras.Model` to train. It must output logits.
        teacher: A trained `keras.Model` with the same inputs and the same
            number of classes. It is frozen and never trained.
        temperature: Positive float. Softening temperature :math:`T` of
            both distributions. Defaults to 2.0.
        alpha: Float in [0, 1]. Weight of the distillation term; the
            compiled loss gets `1 - alpha`. Defaults to 0.5.
        teacher_outputs: `"logits"` (default) or `"probabilities"`: what
            the teacher's output is.
        **kwargs: Passed to `keras.Model` (for example `name`).

    Call arguments:
        inputs: The student's inputs.
        training: Python boolean, passed to the student.

    References:
        - [Hinton et al., 2015. Distilling the Knowledge in a Neural
          Network](https://arxiv.org/abs/1503.02531)
    """

    def __init__(
        self,
        student,
        teacher,
        *,
        temperature=2.0,
        alpha=0.5,
        teacher_outputs="logits",
        **kwargs,
    ):
        for argument, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.layers.Layer):
                raise ValueError(
                    f"Expected `{argument}` to be a keras.Model, "
                    f"received: {argument}={model!r} of type {type(model)}"
                )
        if student is teacher:
            raise ValueError(
                "Expected `student` and `teacher` to be two different models, "
                f"received the same object twice: {student!r}"
            )
        _check_temperature(temperature)
        if (
            not isinstance(alpha, numbers.Real)
            or isinstance(alpha, bool)
            or not 0.0 <= alpha <= 1.0
        ):
            raise ValueError(
                "Expected `alpha` to be a float in [0, 1], "
                f"received: alpha={alpha!r}"
            )
        if teacher_outputs not in _TEACHER_OUTPUTS:
            raise ValueError(
                f"Expected `teacher_outputs` to be one of {_TEACHER_OUTPUTS}, "
                f"received: teacher_outputs={teacher_outputs!r}"
            )
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.teacher_outputs = teacher_outputs
        # A tracked metric attribute is picked up by `Model.metrics`, so it
        # is reset every epoch and shows up in fit/evaluate logs.
        self.distillation_loss_tracker = keras.metrics.Mean(
            name="distillation_loss"
        )

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y_pred is None:
            y_pred = self(x, training=training)
        total = None
        if self.alpha < 1.0:
            if self._compile_loss is None:
                raise ValueError(
                    "`Distiller` with alpha < 1 needs a hard-label loss: pass "
                    "`loss=` to `compile()`, or use alpha=1 for pure "
                    f"distillation. Received: alpha={self.alpha}"
                )
            # `_compile_loss` is what `Trainer.compute_loss` applies; using
            # it directly keeps string losses, loss weights, sample weights
            # and per-output losses working exactly as in a plain model,
            # while leaving the regularization terms unweighted below.
            total = self._compile_loss(y, y_pred, sample_weight)
            if self.alpha > 0.0:
                total = total * (1.0 - self.alpha)
        if self.alpha > 0.0:
            teacher_logits = ops.stop_gradient(self._teacher_logits(x))
            soft = distillation_loss(
                teacher_logits,
                y_pred,
                self.temperature,
                sample_weight=sample_weight,
            )
            self.distillation_loss_tracker.update_state(soft)
            soft = soft * self.alpha
            total = soft if total is None else total + ops.cast(soft, total.dtype)
        for extra in self.losses:
            total = total + ops.cast(
                self._aggregate_additional_loss(extra), total.dtype
            )
        return total

    def get_config(self):
        raise NotImplementedError(
            "`Distiller` is not serializable: it wraps two models for "
            "training only. Save the trained student instead: "
            "`distiller.student.save('student.keras')`."
        )

    def _teacher_logits(self, x):
        outputs = self.teacher(x, training=False)
        if self.teacher_outputs == "probabilities":
            # log(p) differs from the teacher's logits by a per-example
            # constant, which the softmax removes; clipping keeps a class of
            # probability 0 finite.
            outputs = ops.log(
                ops.clip(ops.cast(outputs, "float32"), 1e-12, 1.0)
            )
        return outputs


def _tempered_kl(teacher_logits, student_logits, temperature):
    """Per-example KL(softmax(t/T) || softmax(s/T)) in float32."""
    teacher_logits = ops.cast(teacher_logits, "float32") / temperature
    student_logits = ops.cast(student_logits, "float32") / temperature
    teacher_log_probs = ops.log_softmax(teacher_logits, axis=-1)
    student_log_probs = ops.log_softmax(student_logits, axis=-1)
    return ops.sum(
        ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
        axis=-1,
    )


def _check_temperature(temperature):
    if (
        not isinstance(temperature, numbers.Real)
        or isinstance(temperature, bool)
        or not temperature > 0
        or not math.isfinite(temperature)
    ):
        raise ValueError(
            "Expected `temperature` to be a positive float, "
            f"received: temperature={temperature!r}"
        )
