"""distillation_loss and Distiller: the loss against a NumPy reference, the
alpha=0 reduction to the plain loss, a frozen teacher, fit/evaluate/metrics,
and saving the student."""

import keras
import numpy as np
import pytest

from keras_lowrank.training import Distiller
from keras_lowrank.training import distillation_loss

pytestmark = pytest.mark.backend_agnostic

NUM_CLASSES = 4
FEATURES = 6


def numpy_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def numpy_distillation(teacher_logits, student_logits, temperature, weights=None):
    p = numpy_softmax(np.asarray(teacher_logits, np.float64) / temperature)
    q = numpy_softmax(np.asarray(student_logits, np.float64) / temperature)
    per_example = np.sum(p * (np.log(p) - np.log(q)), axis=-1)
    if weights is not None:
        per_example = per_example * weights
    return temperature**2 * per_example.mean()


def numpy_sparse_crossentropy(labels, logits):
    probs = numpy_softmax(np.asarray(logits, np.float64))
    return -np.mean(np.log(probs[np.arange(len(labels)), labels]))


def classifier(hidden, seed, *, dropout=0.0, batch_norm=False, softmax=False):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((FEATURES,)), keras.layers.Dense(hidden, activation="relu")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(
        keras.layers.Dense(NUM_CLASSES, activation="softmax" if softmax else None)
    )
    return keras.Sequential(layers)


def toy_data(num_examples=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, FEATURES)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=num_examples)
    return x, y


def crossentropy():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def as_numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 5.0])
def test_loss_matches_numpy_reference(temperature):
    rng = np.random.default_rng(1)
    teacher = rng.normal(scale=3.0, size=(16, NUM_CLASSES))
    student = rng.normal(scale=3.0, size=(16, NUM_CLASSES))
    got = float(distillation_loss(teacher, student, temperature))
    assert got == pytest.approx(
        numpy_distillation(teacher, student, temperature), rel=1e-5
    )


def test_loss_with_sample_weight_and_extra_axes():
    rng = np.random.default_rng(2)
    teacher = rng.normal(size=(3, 5, NUM_CLASSES))
    student = rng.normal(size=(3, 5, NUM_CLASSES))
    weights = rng.uniform(size=(3, 5))
    got = float(distillation_loss(teacher, student, 2.0, sample_weight=weights))
    expected = numpy_distillation(
        teacher.reshape(-1, NUM_CLASSES),
        student.reshape(-1, NUM_CLASSES),
        2.0,
        weights.reshape(-1),
    )
    assert got == pytest.approx(expected, rel=1e-5)


def test_loss_is_zero_for_equal_logits_and_finite_when_saturated():
    logits = np.array([[1000.0, -1000.0, 0.0, 5.0]])
    assert float(distillation_loss(logits, logits, 1.0)) == pytest.approx(0.0, abs=1e-6)
    value = float(distillation_loss(logits, -logits, 1.0))
    assert np.isfinite(value) and value > 0


def test_compute_loss_mixes_hard_and_soft_terms():
    student, teacher = classifier(8, seed=1), classifier(32, seed=2)
    x, y = toy_data(32)
    distiller = Distiller(student, teacher, temperature=3.0, alpha=0.3)
    distiller.compile(optimizer="sgd", loss=crossentropy())
    y_pred = distiller(x)
    got = float(distiller.compute_loss(x, y, y_pred, training=False))
    student_logits, teacher_logits = as_numpy(student(x)), as_numpy(teacher(x))
    expected = 0.7 * numpy_sparse_crossentropy(y, student_logits) + 0.3 * (
        numpy_distillation(teacher_logits, student_logits, 3.0)
    )
    assert got == pytest.approx(expected, rel=1e-5)


def test_regularization_is_added_unweighted():
    keras.utils.set_random_seed(4)
    student = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                NUM_CLASSES, kernel_regularizer=keras.regularizers.L2(0.1)
            ),
        ]
    )
    teacher = classifier(16, seed=2)
    x, y = toy_data(32)
    distiller = Distiller(student, teacher, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer="sgd", loss=crossentropy())
    got = float(distiller.compute_loss(x, y, distiller(x), training=False))
    student_logits, teacher_logits = as_numpy(student(x)), as_numpy(teacher(x))
    penalty = 0.1 * np.sum(as_numpy(student.layers[0].kernel).astype(np.float64) ** 2)
    expected = (
        0.5 * numpy_sparse_crossentropy(y, student_logits)
        + 0.5 * numpy_distillation(teacher_logits, student_logits, 2.0)
        + penalty
    )
    assert got == pytest.approx(expected, rel=1e-5)


def test_alpha_zero_is_exactly_the_plain_loss():
    x, y = toy_data(48)
    plain = classifier(8, seed=1)
    student = classifier(8, seed=1)
    # A teacher with the wrong number of classes proves it is never run.
    keras.utils.set_random_seed(3)
    teacher = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(7)])
    distiller = Distiller(student, teacher, alpha=0.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss=crossentropy())
    plain.compile(optimizer=keras.optimizers.SGD(0.1), loss=crossentropy())

    y_pred = plain(x)
    assert float(distiller.compute_loss(x, y, y_pred)) == float(
        plain.compute_loss(x, y, y_pred)
    )
    plain.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    distiller.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for plain_weight, student_weight in zip(plain.weights, student.weights):
        np.testing.assert_allclose(
            as_numpy(student_weight), as_numpy(plain_weight), rtol=1e-6, atol=1e-7
        )


def test_fit_moves_student_toward_teacher_and_keeps_teacher_frozen():
    teacher = classifier(32, seed=2, dropout=0.5, batch_norm=True)
    student = classifier(16, seed=1)
    x, _ = toy_data(128)
    # Labels from the teacher make the task learnable; the KL term is the one
    # checked.
    y = as_numpy(teacher(x, training=False)).argmax(axis=-1)
    teacher_before = [as_numpy(w).copy() for w in teacher.weights]

    def kl_to_teacher():
        return numpy_distillation(
            as_numpy(teacher(x, training=False)), as_numpy(student(x)), 2.0
        )

    before = kl_to_teacher()
    distiller = Distiller(student, teacher, temperature=2.0, alpha=0.8)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), loss=crossentropy())
    distiller.fit(x, y, batch_size=32, epochs=25, verbose=0)
    assert kl_to_teacher() < 0.5 * before

    assert not teacher.trainable
    assert all(
        not any(w is t for t in teacher.weights) for w in distiller.trainable_weights
    )
    for old, new in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(old, as_numpy(new))


def test_evaluate_reports_student_metrics_and_distillation_loss():
    student, teacher = classifier(8, seed=1), classifier(32, seed=2)
    x, y = toy_data(64)
    distiller = Distiller(student, teacher, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer="adam", loss=crossentropy(), metrics=["accuracy"])
    history = distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert {"loss", "accuracy", "distillation_loss"} <= set(history.history)

    logs = distiller.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    student_logits, teacher_logits = as_numpy(student(x)), as_numpy(teacher(x))
    assert logs["accuracy"] == pytest.approx(
        np.mean(student_logits.argmax(axis=-1) == y)
    )
    soft = numpy_distillation(teacher_logits, student_logits, 2.0)
    assert logs["distillation_loss"] == pytest.approx(soft, rel=1e-5)
    hard = numpy_sparse_crossentropy(y, student_logits)
    assert logs["loss"] == pytest.approx(0.5 * hard + 0.5 * soft, rel=1e-5)
    np.testing.assert_allclose(
        as_numpy(distiller.predict(x, verbose=0)), student_logits, rtol=1e-5
    )


def test_teacher_probabilities_give_the_same_loss_as_its_logits():
    x, y = toy_data(32)
    logits_teacher = classifier(16, seed=2)
    probability_teacher = classifier(16, seed=2, softmax=True)
    losses = []
    pairs = ((logits_teacher, "logits"), (probability_teacher, "probabilities"))
    for teacher, kind in pairs:
        student = classifier(8, seed=1)
        distiller = Distiller(student, teacher, alpha=1.0, teacher_outputs=kind)
        distiller.compile(optimizer="sgd", loss=crossentropy())
        losses.append(float(distiller.compute_loss(x, y, distiller(x))))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_pure_distillation_needs_no_compiled_loss():
    student, teacher = classifier(8, seed=1), classifier(16, seed=2)
    x, y = toy_data(32)
    distiller = Distiller(student, teacher, alpha=1.0)
    distiller.compile(optimizer="adam")
    distiller.fit(x, y, epochs=1, verbose=0)

    partial = Distiller(classifier(8, seed=1), teacher, alpha=0.5)
    partial.compile(optimizer="adam")
    with pytest.raises(ValueError, match="loss"):
        partial.fit(x, y, epochs=1, verbose=0)


def test_student_saves_and_loads_while_distiller_refuses(tmp_path):
    student, teacher = classifier(8, seed=1), classifier(16, seed=2)
    x, y = toy_data(32)
    distiller = Distiller(student, teacher)
    distiller.compile(optimizer="adam", loss=crossentropy())
    distiller.fit(x, y, epochs=1, verbose=0)

    path = tmp_path / "student.keras"
    distiller.student.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(as_numpy(restored(x)), as_numpy(student(x)), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="distiller.student.save"):
        distiller.save(tmp_path / "distiller.keras")


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": "half"}, "alpha"),
        ({"teacher_outputs": "softmax"}, "teacher_outputs"),
    ],
)
def test_invalid_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`") as error:
        Distiller(classifier(4, seed=1), classifier(4, seed=2), **kwargs)
    assert f"{argument}={kwargs[argument]!r}" in str(error.value)


def test_invalid_models_raise():
    model = classifier(4, seed=1)
    with pytest.raises(ValueError, match="`teacher`"):
        Distiller(model, "not a model")
    with pytest.raises(ValueError, match="different models"):
        Distiller(model, model)
    with pytest.raises(ValueError, match="`temperature`"):
        distillation_loss(np.zeros((1, 2)), np.zeros((1, 2)), 0)
