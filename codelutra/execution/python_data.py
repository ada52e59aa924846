"""Plain values as JSON: the only thing that crosses between a sandboxed candidate and its judge.

Both sides of the Python sandbox import this file (by name, as the scripts' sibling), so it uses
the standard library only and runs on Python 3.8+. What it can carry: None, bool, int (up to
Python's 4,300-digit limit), float (inf and nan too), complex, str, bytes, list, tuple, dict, set,
frozenset, and those builtin types themselves; numpy arrays and scalars (dtype, shape, bytes); pandas Index, Series and DataFrame
(values, dtype, index, columns, names); scipy sparse matrices; pandas timestamps, timedeltas and missing-value markers.
Every value is rebuilt from its data by the receiving side's own classes, so no behaviour of the
sender's (an `__eq__` that is always true, a subclass of int) survives the crossing. Builtin
subclasses are sent as their base type (a Counter as a dict, a namedtuple as a tuple); anything
else is `NotData`, which the judge reads as a wrong answer rather than compare.

numpy and pandas are never imported to encode (a value of theirs means the sender already has
them); the receiver imports them to decode.
"""

from __future__ import annotations

import base64
import json
import math
import sys

MAX_DEPTH = 100  # nesting deeper than this is not data (and would exhaust the decoder's stack)


class NotData(ValueError):
    """A value that cannot be sent as plain data."""


def dumps(value, other=None) -> str:
    """One line of JSON for `value`; NotData if any part of it is not plain data.

    With `other`, a part that is not data is sent as `{"t": "ref", "v": other(part)}` instead: an
    int that only the sender can resolve (the sandbox's handle on one of the candidate's objects)."""
    try:
        return json.dumps(encode(value, 0, other), allow_nan=True, separators=(",", ":"))
    except (ValueError, RecursionError) as error:  # a too-long int, a cycle
        raise NotData(str(error)) from None


def loads(text, ref=None):
    """The value `dumps` encoded, rebuilt from plain data; NotData if the text is not such an encoding.

    A reference is rebuilt as `ref(number)`; without `ref`, a reference is NotData."""
    try:
        return decode(json.loads(text), 0, ref)
    except NotData:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError) as error:
        raise NotData(f"not an encoded value: {type(error).__name__}: {error}") from None


# --- encoding ---------------------------------------------------------------------------------

_SCALARS = (type(None), bool, str)
_SPARSE_KINDS = frozenset(f"{layout}_{kind}" for layout in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia")
                          for kind in ("matrix", "array"))
# The builtin types a value may name (MBPP passes `int` to a function that filters by type).
_BUILTIN_TYPES = {kind.__name__: kind for kind in (bool, int, float, complex, str, bytes, bytearray, list, tuple,
                                                   dict, set, frozenset, object, type)}
_BASES = ((bool, None), (int, None), (float, None), (str, None), (bytes, None), (bytearray, None),
          (complex, None), (list, list), (tuple, tuple), (set, set), (frozenset, frozenset), (dict, dict))


def encode(value, depth=0, other=None):
    """The JSON-ready form of `value`: natives for None/bool/int/float/str/list, tagged objects else."""
    if depth > MAX_DEPTH:
        raise NotData(f"nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is int:
        return value
    if kind is float:
        return value
    if kind is list:
        return [encode(item, depth + 1, other) for item in value]
    if kind is tuple:
        return {"t": "tuple", "v": [encode(item, depth + 1, other) for item in value]}
    if kind in (set, frozenset):
        return {"t": kind.__name__, "v": [encode(item, depth + 1, other) for item in value]}
    if kind is dict:
        return {"t": "dict", "v": [[encode(k, depth + 1, other), encode(v, depth + 1, other)] for k, v in value.items()]}
    if kind in (bytes, bytearray):
        return {"t": kind.__name__, "v": base64.b64encode(bytes(value)).decode("ascii")}
    if kind is complex:
        return {"t": "complex", "v": [value.real, value.imag]}
    if kind is type and _BUILTIN_TYPES.get(value.__name__) is value:
        return {"t": "type", "v": value.__name__}
    module = getattr(kind, "__module__", "") or ""
    if module.split(".")[0] == "numpy":
        return _encode_numpy(value, depth, other)
    if module.split(".")[0] == "pandas":
        return _encode_pandas(value, depth, other)
    if module.startswith("scipy.sparse") and kind.__name__ in _SPARSE_KINDS:
        coo = value.tocoo()
        return {"t": "sparse", "v": {"kind": kind.__name__, "shape": list(value.shape),
                                     "data": encode(coo.data, depth + 1, other), "row": encode(coo.row, depth + 1, other),
                                     "col": encode(coo.col, depth + 1, other)}}
    for base, container in _BASES:  # a subclass of a builtin: sent as its base value
        if isinstance(value, base):
            if container is None:
                return encode(base(value) if base is not float else float.__float__(value), depth, other)
            return encode(container(value), depth, other)
    return _other(value, other)


def _other(value, other):
    """What stands for a value that is not data: `other(value)`'s reference, where there is an `other`."""
    if other is None:
        raise NotData(f"a {_type_name(value)} is not plain data")
    return {"t": "ref", "v": other(value)}


def _type_name(value) -> str:
    kind = type(value)
    module = getattr(kind, "__module__", "")
    return kind.__name__ if module in ("builtins", "__candidate__", None) else f"{module}.{kind.__name__}"


def _encode_numpy(value, depth, other):
    numpy = sys.modules["numpy"]
    if type(value) is numpy.ndarray:
        return {"t": "ndarray", "v": _array_data(value, depth, other)}
    if isinstance(value, numpy.generic) and type(value).__module__ == "numpy":
        return {"t": "npscalar", "v": _array_data(numpy.array([value]), depth, other)}
    if isinstance(value, numpy.dtype):
        return {"t": "dtype", "v": value.str if value.names is None else str(value)}
    return _other(value, other)


def _array_data(array, depth, other):
    """dtype, shape and the bytes (or, for object arrays, the encoded items) of a numpy array."""
    if array.dtype.names is not None or array.dtype.hasobject and array.dtype.kind != "O":
        raise NotData("a structured numpy array is not plain data")
    if array.dtype.kind == "O":
        items = [encode(item, depth + 1, other) for item in array.reshape(-1).tolist()]
        return {"dtype": "object", "shape": list(array.shape), "items": items}
    data = base64.b64encode(array.tobytes(order="C")).decode("ascii")
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": data}


def _encode_pandas(value, depth, other):
    pandas = sys.modules["pandas"]
    kind = type(value)
    if kind is pandas.DataFrame:
        columns = [_column(value.iloc[:, number], depth, other) for number in range(value.shape[1])]
        return {"t": "DataFrame", "v": {"index": encode(value.index, depth + 1, other),
                                        "columns": encode(value.columns, depth + 1, other), "data": columns}}
    if kind is pandas.Series:
        return {"t": "Series", "v": {"index": encode(value.index, depth + 1, other), "name": encode(value.name, depth + 1, other),
                                     **_column(value, depth, other)}}
    if kind is pandas.RangeIndex:
        return {"t": "RangeIndex", "v": [value.start, value.stop, value.step, encode(value.name, depth + 1, other)]}
    if kind is pandas.MultiIndex:
        levels = [_column(value.get_level_values(number), depth, other) for number in range(value.nlevels)]
        return {"t": "MultiIndex", "v": {"levels": levels, "names": [encode(n, depth + 1, other) for n in value.names]}}
    if isinstance(value, pandas.Index) and kind.__module__.startswith("pandas"):
        return {"t": "Index", "v": {"name": encode(value.name, depth + 1, other), **_column(value, depth, other)}}
    if kind is pandas.Timestamp:
        return {"t": "Timestamp", "v": [value.isoformat(), None if value.tz is None else str(value.tz)]}
    if kind is pandas.Timedelta:
        return {"t": "Timedelta", "v": value.isoformat()}
    if value is pandas.NaT:
        return {"t": "NaT"}
    if value is pandas.NA:
        return {"t": "NA"}
    return _other(value, other)


def _column(values, depth, other):
    """The values of a Series, Index or DataFrame column, with their dtype's name."""
    pandas = sys.modules["pandas"]
    dtype = values.dtype
    if isinstance(dtype, pandas.CategoricalDtype):
        categorical = values.array
        return {"dtype": "category", "ordered": bool(dtype.ordered),
                "categories": _column(pandas.Index(dtype.categories), depth, other),
                "codes": encode(categorical.codes.copy(), depth + 1, other)}
    numpy = sys.modules["numpy"]
    if isinstance(dtype, numpy.dtype) and dtype.kind != "O":
        return {"dtype": dtype.str, "values": encode(values.to_numpy(copy=True), depth + 1, other)}
    items = numpy.asarray(values.astype(object)).reshape(-1)
    return {"dtype": str(dtype), "values": encode(items, depth + 1, other)}


# --- decoding ---------------------------------------------------------------------------------


def decode(data, depth=0, ref=None):
    """The value an `encode` result stands for, built from scratch by this process's own types."""
    if depth > MAX_DEPTH:
        raise NotData(f"nested deeper than {MAX_DEPTH}")
    kind = type(data)
    if data is None or kind in (bool, str, int):
        return data
    if kind is float:
        return data
    if kind is list:
        return [decode(item, depth + 1, ref) for item in data]
    if kind is not dict or not isinstance(data.get("t"), str):
        raise NotData(f"not an encoded value: {kind.__name__}")
    tag, body = data["t"], data.get("v")
    if tag == "ref":
        if ref is None or type(body) is not int:
            raise NotData("not an encoded value: a reference where none may be")
        return ref(body)
    if tag in _CONTAINERS:
        return _CONTAINERS[tag](decode(item, depth + 1, ref) for item in _list(body))
    if tag == "dict":
        return {_hashable(decode(k, depth + 1, ref)): decode(v, depth + 1, ref) for k, v in _list(body)}
    if tag in ("bytes", "bytearray"):
        return (bytes if tag == "bytes" else bytearray)(base64.b64decode(_text(body), validate=True))
    if tag == "type":
        return _BUILTIN_TYPES[_text(body)]
    if tag == "complex":
        real, imag = _list(body)
        return complex(float(real), float(imag))
    if tag in ("ndarray", "npscalar", "dtype"):
        return _decode_numpy(tag, body, depth, ref)
    if tag == "sparse":
        return _decode_sparse(body, depth, ref)
    return _decode_pandas(tag, body, depth, ref)


_CONTAINERS = {"tuple": tuple, "set": set, "frozenset": frozenset}


def _list(body) -> list:
    if type(body) is not list:
        raise NotData("not an encoded value: expected a list")
    return body


def _text(body) -> str:
    if type(body) is not str:
        raise NotData("not an encoded value: expected a string")
    return body


def _hashable(key):
    try:
        hash(key)
    except TypeError:
        raise NotData("a dict key that is not hashable") from None
    return key


def _decode_numpy(tag, body, depth, ref):
    import numpy

    if tag == "dtype":
        return numpy.dtype(_text(body))
    array = _decode_array(body, depth, ref)
    return array.reshape(-1)[0] if tag == "npscalar" else array


def _decode_array(body, depth, ref):
    import numpy

    shape = tuple(int(n) for n in _list(body["shape"]))
    if body["dtype"] == "object":
        items = [decode(item, depth + 1, ref) for item in _list(body["items"])]
        array = numpy.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = numpy.dtype(_text(body["dtype"]))
    if dtype.hasobject or dtype.names is not None:
        raise NotData(f"not an encoded value: dtype {dtype}")
    data = base64.b64decode(_text(body["data"]), validate=True)
    if len(data) != dtype.itemsize * math.prod(shape):
        raise NotData(f"not an encoded value: {len(data)} bytes for shape {shape} of {dtype}")
    return numpy.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _decode_sparse(body, depth, ref):
    """A scipy sparse matrix (or array) of the kind it was, from its coordinates."""
    import scipy.sparse

    kind = _text(body["kind"])
    if kind not in _SPARSE_KINDS:
        raise NotData(f"not an encoded value: sparse kind {kind[:40]!r}")
    shape = tuple(int(n) for n in _list(body["shape"]))
    data, row, col = (decode(body[name], depth + 1, ref) for name in ("data", "row", "col"))
    return getattr(scipy.sparse, kind)(scipy.sparse.coo_matrix((data, (row, col)), shape=shape))


def _decode_pandas(tag, body, depth, ref):
    import pandas

    if tag == "DataFrame":
        index, columns = decode(body["index"], depth + 1, ref), decode(body["columns"], depth + 1, ref)
        data = [_decode_column(column, depth, ref) for column in _list(body["data"])]
        if len(data) != len(columns):
            raise NotData(f"not an encoded value: {len(columns)} columns named, {len(data)} given")
        frame = pandas.DataFrame({number: pandas.Series(values, index=index, copy=False)
                                  for number, values in enumerate(data)}, index=index)
        frame.columns = columns
        return frame
    if tag == "Series":
        values = _decode_column(body, depth, ref)
        return pandas.Series(values, index=decode(body["index"], depth + 1, ref), name=decode(body["name"], depth + 1, ref))
    if tag == "RangeIndex":
        start, stop, step, name = _list(body)
        return pandas.RangeIndex(int(start), int(stop), int(step), name=decode(name, depth + 1, ref))
    if tag == "MultiIndex":
        levels = [_decode_column(level, depth, ref) for level in _list(body["levels"])]
        return pandas.MultiIndex.from_arrays(levels, names=[decode(n, depth + 1, ref) for n in _list(body["names"])])
    if tag == "Index":
        return pandas.Index(_decode_column(body, depth, ref), name=decode(body["name"], depth + 1, ref), copy=False)
    if tag == "Timestamp":
        iso, tz = _list(body)
        stamp = pandas.Timestamp(_text(iso))
        return stamp if tz is None else stamp.tz_convert(_text(tz))
    if tag == "Timedelta":
        return pandas.Timedelta(_text(body))
    if tag == "NaT":
        return pandas.NaT
    if tag == "NA":
        return pandas.NA
    raise NotData(f"not an encoded value: unknown tag {tag[:40]!r}")


def _decode_column(body, depth, ref):
    """A pandas array (or numpy array) with the dtype it was sent with."""
    import pandas

    dtype = _text(body["dtype"])
    if dtype == "category":
        categories = _decode_column(body["categories"], depth, ref)
        codes = decode(body["codes"], depth + 1, ref)
        return pandas.Categorical.from_codes(codes, categories=categories, ordered=bool(body["ordered"]))
    values = decode(body["values"], depth + 1, ref)
    if type(values).__name__ != "ndarray":
        raise NotData("not an encoded value: column values are not an array")
    if values.dtype.kind != "O":
        return values
    return pandas.array(values, dtype=pandas.api.types.pandas_dtype(dtype), copy=False)
