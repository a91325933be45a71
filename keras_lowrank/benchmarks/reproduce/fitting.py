"""Training with dev-split model selection, and the fine-tune schedules.

Every model of the reproduction (the uncompressed model, the offline model,
every online fine-tune) is trained for a fixed number of epochs; after each
epoch its accuracy on the dev split is measured and the weights of the best
dev epoch are restored at the end. The test split is evaluated once, on the
restored weights: test accuracy never selects anything. This module builds
the learning-rate schedules from their specs and runs those fits (plain or
distilled). It must not choose ranks or byte budgets (see `methods`).
"""

import math

import keras
import numpy as np

from keras_lowrank.benchmarks.reproduce.config import parse_schedule


def build_schedule(spec, steps_per_epoch):
    """Builds the learning-rate schedule of a fine-tune from its spec.

    Args:
        spec: a schedule spec (see `config.parse_schedule`).
        steps_per_epoch: optimizer steps per epoch; `cycle` (in epochs) is
            turned into steps with it.

    Returns:
        A `LearningRateSchedule` or a float (constant rate).
    """
    from keras_lowrank.schedules import CyclicalLearningRate
    from keras_lowrank.schedules import CyclicallyAnnealedLearningRate

    family, p = parse_schedule(spec)
    if family == "constant":
        return float(p["lr"])
    # A cycle of `cycle` epochs: up for half of it, down for the other half.
    cycle_steps = max(2, int(round(p["cycle"] * steps_per_epoch)))
    minimum = min(p["min"], p["max"])
    if family == "calr":
        return CyclicallyAnnealedLearningRate(
            minimum, p["max"], step_size=cycle_steps / 2.0, decay=p["decay"]
        )
    if family == "clr":
        return CyclicalLearningRate(minimum, p["max"], step_size=cycle_steps / 2.0)
    # Keras' cosine decay with warm restarts, one period per cycle, floored
    # at the same minimum as the cyclical schedules.
    return keras.optimizers.schedules.CosineDecayRestarts(
        initial_learning_rate=p["max"],
        first_decay_steps=cycle_steps,
        t_mul=1.0,
        m_mul=1.0,
        alpha=minimum / p["max"],
    )


def accuracy(model, x, y, batch_size=1024):
    """Accuracy of a logits model on integer labels.

    Calls the model directly in batches (inference mode) rather than through
    `predict`: a quantized or rebuilt layer replaces variables, and a traced
    predict function must never outlive them.
    """
    return _predict_accuracy(model, x, y, batch_size)


class _DevSelection(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best dev accuracy."""

    def __init__(self, model, x_dev, y_dev):
        super().__init__()
        self._student = model
        self._x_dev, self._y_dev = x_dev, y_dev
        self.best_accuracy = -1.0
        self.best_epoch = 0
        self.best_weights = None
        self.dev_curve = []

    def on_epoch_end(self, epoch, logs=None):
        acc = _predict_accuracy(self._student, self._x_dev, self._y_dev)
        self.dev_curve.append(acc)
        # Strictly better only: ties keep the earlier (cheaper) epoch.
        if acc > self.best_accuracy:
            self.best_accuracy, self.best_epoch = acc, epoch + 1
            self.best_weights = [np.array(w) for w in self._student.get_weights()]


def _predict_accuracy(model, x, y, batch_size=1024):
    # Direct calls in batches: cheaper than `predict` inside a callback.
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size], training=False)
        correct += int(np.sum(np.argmax(np.asarray(logits), axis=-1) == y[start : start + batch_size]))
    return correct / max(1, len(x))


def fit_with_dev_selection(
    model,
    train,
    dev,
    *,
    epochs,
    learning_rate,
    batch_size,
    teacher=None,
    temperature=2.0,
    alpha=0.5,
):
    """Trains `model` and restores the weights of its best dev epoch.

    Args:
        model: the `keras.Model` to train (logits out). Trained in place.
        train: `(x, y)` numpy arrays.
        dev: `(x, y)` numpy arrays used for the epoch selection.
        epochs: the fixed budget of epochs.
        learning_rate: a float or a `LearningRateSchedule` for Adam.
        batch_size: batch size.
        teacher: optional trained model: the fit then distills from its
            logits with `keras_lowrank.training.Distiller`.
        temperature, alpha: distillation settings.

    Returns:
        A dict with `best_epoch`, `dev_accuracy` (at the best epoch) and
        `dev_curve` (dev accuracy after each epoch).
    """
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.trainable = True
    if teacher is not None:
        from keras_lowrank.training import Distiller

        trainer = Distiller(model, teacher, temperature=temperature, alpha=alpha)
    else:
        trainer = model
    trainer.compile(optimizer=optimizer, loss=loss)
    selection = _DevSelection(model, *dev)
    x, y = train
    trainer.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[selection],
    )
    model.set_weights(selection.best_weights)
    return {
        "best_epoch": selection.best_epoch,
        "dev_accuracy": selection.best_accuracy,
        "dev_curve": [round(a, 5) for a in selection.dev_curve],
    }


def steps_per_epoch(num_examples, batch_size):
    """Optimizer steps in one epoch."""
    return max(1, math.ceil(num_examples / batch_size))
