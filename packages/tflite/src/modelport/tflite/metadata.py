"""The input normalisation a TFLite model's metadata declares (``TFLITE_METADATA``), when it has one.

The metadata is a second flatbuffer (tflite-support's metadata_schema.fbs) that neither
the ``tflite`` package nor ai-edge-litert can parse, so the few tables on the path to
``NormalizationOptions`` are read here with ``flatbuffers`` itself. Field numbers are
metadata_schema.fbs's: ModelMetadata.subgraph_metadata = 3,
SubGraphMetadata.input_tensor_metadata = 2, TensorMetadata.process_units = 4,
ProcessUnit.options_type/options = 0/1, NormalizationOptions.mean/std = 0/1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union tag


def _table(buf: bytes, pos: int) -> Any:
    import flatbuffers

    return flatbuffers.table.Table(bytearray(buf), pos)


def _field(t: Any, index: int) -> int:
    return cast(int, t.Offset(4 + 2 * index))


def _vector_tables(t: Any, index: int) -> list[Any]:
    o = _field(t, index)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [_table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]


def _floats(t: Any, index: int) -> tuple[float, ...] | None:
    import flatbuffers

    o = _field(t, index)
    if not o:
        return None
    start = t.Vector(o)
    return tuple(float(t.Get(flatbuffers.number_types.Float32Flags, start + 4 * i)) for i in range(t.VectorLen(o)))


def normalization(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) of the first input from the model's metadata, or None when it declares none."""
    from ai_edge_litert import schema_py_generated as schema

    buf = path.read_bytes()
    model = schema.Model.GetRootAsModel(buf, 0)
    for k in range(model.MetadataLength()):
        meta = model.Metadata(k)
        if meta.Name() != b"TFLITE_METADATA":
            continue
        data = model.Buffers(meta.Buffer()).DataAsNumpy()
        if not hasattr(data, "tobytes"):
            return None
        blob = data.tobytes()
        import flatbuffers

        root = _table(blob, flatbuffers.encode.Get(flatbuffers.packer.uoffset, bytearray(blob), 0))
        for subgraph in _vector_tables(root, 3)[:1]:
            for tensor in _vector_tables(subgraph, 2)[:1]:
                for unit in _vector_tables(tensor, 4):
                    o = _field(unit, 0)
                    if not o or unit.Get(flatbuffers.number_types.Uint8Flags, o + unit.Pos) != NORMALIZATION_OPTIONS:
                        continue
                    o = _field(unit, 1)
                    options = _table(unit.Bytes, unit.Indirect(o + unit.Pos))
                    mean, std = _floats(options, 0), _floats(options, 1)
                    if mean and std:
                        return mean, std
    return None
