"""Named metadata entries inside a `.tflite` flatbuffer.

A TFLite model carries a list of `(name, buffer)` metadata entries next to
its tensors (the converter writes `min_runtime_version` there); any
flatbuffer reader, on a phone or here, can read one back by name. The
export stores what travels with the model but is not a graph op in one of
them, such as a raw-text model's vocabulary and tokenizer settings, so the
model is one file and the two can never be separated or mismatched.

Writing re-packs the flatbuffer through the schema's object API; every
buffer is re-aligned to 16 bytes, as the converter writes them, so tensor
data keeps the alignment kernels expect.
"""

import functools
import os

import numpy as np

# The alignment TFLite's own writer gives tensor buffers.
BUFFER_ALIGNMENT = 16
FILE_IDENTIFIER = b"TFL3"


def with_metadata(flatbuffer, name, data):
    """`flatbuffer` with a metadata entry `name` holding `data` (bytes).

    An entry of the same name is replaced. The model's graph and tensors are
    unchanged.

    Args:
        flatbuffer: The `.tflite` model as bytes.
        name: The entry's name.
        data: Its content, bytes.

    Returns:
        The new flatbuffer, bytes.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    _inline_buffers(model, flatbuffer, name)
    entries = [entry for entry in (model.metadata or []) if _decode(entry.name) != name]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(bytes(data), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]
    aligned = _aligned_buffer_class()
    for buffer in model.buffers:
        buffer.__class__ = aligned
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _inline_buffers(model, flatbuffer, name):
    """Moves buffers stored after the flatbuffer (`offset`, `size`) into it.

    Some writers (AI Edge Quantizer) append every buffer after the
    flatbuffer and point at it; the re-packed model holds them inline again,
    as the converter writes them, which only a model under 2 GB can.
    """
    external = [buffer for buffer in model.buffers or [] if buffer.offset > 1]
    if sum(int(buffer.size) for buffer in external) + len(flatbuffer) >= 2**31:
        raise ValueError(
            "The model stores its buffers outside the flatbuffer (a model over 2 GB); "
            f"metadata {name!r} cannot be added to it"
        )
    for buffer in external:
        buffer.data = np.frombuffer(bytes(flatbuffer[buffer.offset : buffer.offset + buffer.size]), dtype=np.uint8)
        buffer.offset, buffer.size = 0, 0


def read_metadata(model_content, name):
    """The bytes of metadata entry `name` of a flatbuffer (bytes or path), or `None`."""
    from ai_edge_litert import schema_py_generated as schema

    if not isinstance(model_content, (bytes, bytearray)):
        with open(os.fspath(model_content), "rb") as f:
            model_content = f.read()
    model = schema.Model.GetRootAsModel(bytes(model_content), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _decode(entry.Name()) == name:
            buffer = model.Buffers(entry.Buffer())
            return b"" if buffer.DataIsNone() else buffer.DataAsNumpy().tobytes()
    return None


def _decode(name):
    return name.decode() if isinstance(name, bytes) else name


def _aligned_vector(builder, data):
    """A `[ubyte]` vector whose first byte is `BUFFER_ALIGNMENT`-aligned."""
    data = np.asarray(data, dtype=np.uint8).tobytes()
    builder.StartVector(1, len(data), BUFFER_ALIGNMENT)
    builder.head = builder.head - len(data)
    builder.Bytes[builder.head : builder.head + len(data)] = data
    return builder.EndVector()


@functools.lru_cache(maxsize=None)
def _aligned_buffer_class():
    from ai_edge_litert import schema_py_generated as schema

    class AlignedBuffer(schema.BufferT):
        """`BufferT` packed with its data aligned as the converter aligns it."""

        def Pack(self, builder):
            data = _aligned_vector(builder, self.data) if self.data is not None else None
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBuffer
