"""Plain trees of arrays as ``.npz`` bytes, and back: no pickle, exact to the bit.

A plain tree is an array (anything ``np.asarray`` takes), ``None``, or a tuple, list or dict
(string keys) of plain trees. Its leaves are stored as ``arr_0 … arr_n``; its shape as JSON in
one more array, ``structure``. ``np.load(..., allow_pickle=False)`` reads it: an object array
is refused when it is written, never unpickled when it is read.
"""

from __future__ import annotations

import io
import json

import numpy as np


class NotPlainError(TypeError):
    """A tree with a node ``tree_bytes`` cannot store (a NamedTuple, an object array, …)."""


def tree_bytes(tree) -> bytes:
    """``tree`` (a plain tree) as the bytes of an ``.npz`` file; NotPlainError if it is not one."""
    leaves: list[np.ndarray] = []
    structure = _encode(tree, leaves)
    arrays = {f"arr_{i}": leaf for i, leaf in enumerate(leaves)}
    arrays["structure"] = np.frombuffer(json.dumps(structure).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def tree_from(data: bytes):
    """The plain tree ``tree_bytes`` stored in ``data`` (ValueError if it holds none)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as held:
        structure = json.loads(held["structure"].tobytes())
        leaves = {name: held[name] for name in held.files if name != "structure"}
    return _decode(structure, leaves)


def _encode(node, leaves: list):
    if node is None:
        return {"none": None}
    if type(node) in (tuple, list):
        return {type(node).__name__: [_encode(x, leaves) for x in node]}
    if type(node) is dict:
        if not all(isinstance(k, str) for k in node):
            raise NotPlainError("a dict with keys that are not strings")
        return {"dict": {k: _encode(v, leaves) for k, v in node.items()}}
    if isinstance(node, tuple | list | dict):  # NamedTuple, OrderedDict, …: not plain
        raise NotPlainError(f"a {type(node).__name__}")
    leaf = np.asarray(node)
    if leaf.dtype.hasobject:
        raise NotPlainError("an object array")
    leaves.append(leaf)
    return {"array": len(leaves) - 1}


def _decode(node, leaves: dict):
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError("not a stored tree")
    ((kind, value),) = node.items()
    if kind == "none":
        return None
    if kind == "tuple":
        return tuple(_decode(x, leaves) for x in value)
    if kind == "list":
        return [_decode(x, leaves) for x in value]
    if kind == "dict":
        return {k: _decode(v, leaves) for k, v in value.items()}
    if kind == "array":
        return leaves[f"arr_{value}"]
    raise ValueError(f"not a stored tree (node {kind!r})")
