"""A KerasHub text task as the model of its token ids, for a one-call export.

A KerasHub classifier (`BertTextClassifier`, `DistilBertTextClassifier`, ...)
takes a dict: `token_ids`, and `segment_ids` and `padding_mask` where its
backbone has them. For one text per row, the other two follow from the ids:
segment 0 everywhere, and the mask is "not the pad id", which is what the
task's preprocessor gives. The file then has one input, `token_ids`, so an
application cannot feed a mask that disagrees with its ids; the tokenizer's
vocabulary and settings travel inside the file (metadata entry
`keras_lowrank.keras_hub_tokenizer`, JSON), as a raw-text model's do.

This module only finds and wraps; it must not convert or write.
"""

import dataclasses
import json

METADATA_NAME = "keras_lowrank.keras_hub_tokenizer"
FORMAT_VERSION = 1
# The inputs a one-text-per-row task takes, the first being the ids.
TASK_INPUTS = ("token_ids", "segment_ids", "padding_mask")


@dataclasses.dataclass
class TaskModel:
    """A KerasHub task as its id-input model and its tokenizer.

    Attributes:
        ids_model: A `keras.Model` of `token_ids` alone, sharing the task's
            layers (segment ids and padding mask follow from the ids).
        sequence_length: The length of the ids (the preprocessor's, or the
            one given), `None` if neither fixes it.
        pad_id: The id whose positions the padding mask leaves out.
        tokenizer: The task's tokenizer, `None` without a preprocessor.
        preprocessor: The task's preprocessor, or `None`.
    """

    ids_model: object
    sequence_length: int | None
    pad_id: int
    tokenizer: object = None
    preprocessor: object = None

    def summary(self):
        """The settings without the vocabulary, for reports."""
        size = len(self.tokenizer.get_vocabulary()) if self.tokenizer is not None else None
        return {"tokenizer": type(self.tokenizer).__name__ if self.tokenizer is not None else None,
                "vocabulary_size": size, "sequence_length": self.sequence_length, "pad_id": self.pad_id}

    def settings(self):
        """The JSON the file carries: tokenizer class, config and vocabulary."""
        tokenizer = self.tokenizer
        data = {
            "format": METADATA_NAME, "version": FORMAT_VERSION,
            "input": "token_ids", "sequence_length": self.sequence_length, "pad_id": self.pad_id,
            "preprocessor": type(self.preprocessor).__name__ if self.preprocessor is not None else None,
            "tokenizer": None, "wordpiece": False, "config": None, "vocabulary": None, "special_token_ids": None,
        }
        if tokenizer is not None:
            config = {k: v for k, v in tokenizer.get_config().items() if k != "vocabulary" and _is_json(v)}
            import keras_hub

            data.update(
                tokenizer=type(tokenizer).__name__,
                # Whether `keras_lowrank.export.WordPieceTokenizer` reproduces it.
                wordpiece=isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer),
                config=config,
                vocabulary=[str(token) for token in tokenizer.get_vocabulary()],
                special_token_ids={
                    name: int(getattr(tokenizer, name))
                    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "start_token_id",
                                 "end_token_id", "unk_token_id", "mask_token_id")
                    if isinstance(getattr(tokenizer, name, None), int)
                },
            )
        return json.dumps(data, ensure_ascii=False)


def is_task(model):
    """Whether `model` takes a KerasHub-style dict with `token_ids`."""
    if not getattr(model, "inputs", None):
        return False
    # `getattr`: `model.input` raises for a Sequential model never called.
    inputs = getattr(model, "input", None)
    return isinstance(inputs, dict) and "token_ids" in inputs


def split_task(model, sequence_length=None):
    """The id-input model of a KerasHub text task; `None` for any other model.

    Args:
        model: A built `keras.Model`.
        sequence_length: The ids' length where the preprocessor does not
            fix it (or to override it).

    Returns:
        A `TaskModel`, or `None` when `model` takes no `token_ids` dict.

    Raises:
        ValueError: In one line when the task takes inputs other than
            `token_ids`, `segment_ids` and `padding_mask` (a multi-segment
            or multimodal task), whose values the ids alone cannot give.
    """
    import keras

    if not is_task(model):
        return None
    names = list(model.input)
    extra = [name for name in names if name not in TASK_INPUTS]
    if extra:
        raise ValueError(
            f"The task takes inputs {names}; a one-call export derives only segment_ids and padding_mask "
            f"from token_ids, not {extra}: export a keras.Model of the inputs you feed"
        )
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = int(pad_id) if isinstance(pad_id, int) else 0
    fixed = getattr(preprocessor, "sequence_length", None)
    if isinstance(fixed, int) and sequence_length is not None and sequence_length != fixed:
        raise ValueError(
            f"`sequence_length={sequence_length!r}` differs from the sequence_length {fixed} of the task's "
            "preprocessor, which gives the file its ids"
        )
    if sequence_length is None:
        length = fixed
        sequence_length = length if isinstance(length, int) else model.input["token_ids"].shape[1]
    ids = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    feed = {"token_ids": ids}
    if "segment_ids" in names:
        feed["segment_ids"] = keras.ops.zeros_like(ids)
    if "padding_mask" in names:
        feed["padding_mask"] = keras.ops.not_equal(ids, pad_id)
    ids_model = keras.Model(ids, model(feed), name=f"{model.name}_token_ids")
    return TaskModel(ids_model=ids_model, sequence_length=sequence_length, pad_id=pad_id,
                     tokenizer=tokenizer, preprocessor=preprocessor)


def read_task_settings(model_content):
    """The tokenizer settings a task's `.tflite` file carries (a dict), or `None`."""
    from keras_lowrank.export import metadata

    data = metadata.read_metadata(model_content, METADATA_NAME)
    return None if data is None else json.loads(data.decode("utf-8"))


def _is_json(value):
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
