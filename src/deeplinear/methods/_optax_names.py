"""Names for users' optax transformations, read from optax itself.

An ``optax.GradientTransformation`` is a pair of closures; what built it shows in them: the
update function's qualified name (``scale_by_adam.<locals>.update_fn``: the function that made
it), and its closure cells (a ``chain``'s inner update functions, a ``named_chain``'s pairs, a
wrapper's inner transformation, the numbers it was given). So:

- a chain that optax's own alias builds (``optax.adam(1e-2)`` is ``chain(scale_by_adam,
  scale)``) is named after the alias, ``optax.adam``: each public alias of optax is built once at
  learning rate 1 and its chain of components (the learning-rate step read as one, whether a
  constant ``scale`` or a schedule) is looked up; where several aliases have the same
  components (``adam``, ``nadam``), the one whose defaults the settings equal, else the one
  named like its first component;
- any other chain reads ``chain(clip_by_global_norm, adam)``, a ``named_chain``
  ``named_chain(clip=clip_by_global_norm, opt=sgd)``, a wrapper ``masked(adam)``, one
  transformation ``optax.clip_by_global_norm``; one from outside optax by its module and function.

``settings(tx)`` is what the closures hold (numbers, strings, flags, arrays, the functions and
their own settings), so two transformations with one name and other settings are told apart
(``unique_name``: ``optax.adam``, then ``optax.adam#2``, in the order first named in this
process; equal settings get the same name again).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable

import numpy as np
import optax

LEARNING_RATE_STEPS = frozenset({"scale", "scale_by_learning_rate", "scale_by_schedule"})
TRANSPARENT = frozenset({"with_extra_args_support"})


def _outer(function) -> str:
    """The function that made ``function``: ``scale_by_adam`` for ``scale_by_adam.<locals>.
    update_fn``; a bound method's class; a plain function's own name."""
    if inspect.ismethod(function):
        return type(function.__self__).__name__
    qualname = getattr(function, "__qualname__", None) or type(function).__name__
    return qualname.split(".<locals>")[0].replace("<lambda>", "lambda")


def _cells(function) -> dict:
    """A function's closure as {free variable: value} (empty cells left out)."""
    if inspect.ismethod(function):  # optax.MultiSteps: its transformations only
        held = vars(function.__self__).items()
        return {k: v for k, v in held if isinstance(v, optax.GradientTransformation)}
    code = getattr(function, "__code__", None)
    out = {}
    for name, cell in zip(code.co_freevars if code else (), function.__closure__ or ()):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return out


def _inner(function) -> list:
    """The transformations (or their update functions) a transformation's update wraps."""
    found = []
    for value in _cells(function).values():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                item = item[1]  # a named_chain's (name, transformation)
            if isinstance(item, optax.GradientTransformation):
                found.append(item.update)
            elif callable(item) and item is not function and _is_update(item):
                found.append(item)
    return found


def _is_update(function) -> bool:
    name = getattr(function, "__qualname__", "")
    return name.endswith(("update_fn", ".update")) or _outer(function) in TRANSPARENT


def components(update) -> tuple[str, ...]:
    """The leaves of a transformation's update, in order, chains and wrappers of extra
    arguments flattened; a learning-rate step is ``lr``."""
    outer = _outer(update)
    inner = _inner(update)
    if outer in TRANSPARENT or outer in ("chain", "named_chain"):
        return tuple(leaf for function in inner for leaf in components(function))
    return ("lr",) if outer in LEARNING_RATE_STEPS else (outer,)


def settings(value, depth: int = 0):
    """What a transformation (or function, or value) holds, as a comparable tree."""
    if depth > 12:
        return "…"
    if isinstance(value, optax.GradientTransformation):
        return ("tx", settings(value.init, depth + 1), settings(value.update, depth + 1))
    if value is None or isinstance(value, bool | int | float | str | complex):
        return value
    if isinstance(value, np.ndarray | np.generic) or hasattr(value, "__array__"):
        array = np.asarray(value)
        return ("array", array.dtype.str, array.shape, array.tobytes())
    if isinstance(value, tuple | list):
        return tuple(settings(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return tuple((str(k), settings(v, depth + 1)) for k, v in sorted(value.items(), key=str))
    if isinstance(value, functools.partial):
        held = (value.func, value.args, dict(value.keywords))
        return ("partial", *(settings(item, depth + 1) for item in held))
    if callable(value) and (hasattr(value, "__code__") or inspect.ismethod(value)):
        module = getattr(value, "__module__", "") or ""
        closure = settings(_cells(value), depth + 1)
        return ("function", module, getattr(value, "__qualname__", ""), closure)
    text = repr(value)
    return ("object", type(value).__qualname__, text if " at 0x" not in text else id(value))


def _without_learning_rate(update):
    """The settings of a chain's leaves, learning-rate steps left out."""
    outer = _outer(update)
    if outer in TRANSPARENT or outer in ("chain", "named_chain"):
        return tuple(s for f in _inner(update) for s in _without_learning_rate(f))
    return () if outer in LEARNING_RATE_STEPS else (settings(update),)


@functools.lru_cache(maxsize=1)
def aliases() -> dict[tuple[str, ...], tuple[tuple[str, object], ...]]:
    """{components: ((alias name, its settings at its defaults), …)} for optax's aliases."""
    table: dict[tuple[str, ...], list] = {}
    for name, factory in sorted(vars(optax).items()):
        if not _is_alias(factory):
            continue
        for keywords in _variants(factory):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    made = factory(1.0, **keywords)
            except Exception:  # an alias that needs more than a learning rate: not named by it
                continue
            if isinstance(made, optax.GradientTransformation):
                entry = (name, _without_learning_rate(made.update))
                table.setdefault(components(made.update), []).append(entry)
    return {key: tuple(entries) for key, entries in table.items()}


def _is_alias(factory) -> bool:
    function = factory.func if isinstance(factory, functools.partial) else factory
    return inspect.isfunction(function) and function.__module__.endswith(".alias")


def _variants(factory) -> list[dict]:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return [{}]
    return [{}, {"momentum": 0.9}] if "momentum" in parameters else [{}]


def _alias_of(update) -> str | None:
    """The optax alias that builds a chain like ``update``'s, or None."""
    if _outer(update) not in ("chain", *TRANSPARENT):
        return None
    leaves = components(update)
    candidates = aliases().get(leaves, ())
    if not candidates:
        return None
    mine = _without_learning_rate(update)
    exact = [name for name, defaults in candidates if defaults == mine]
    if exact:
        return exact[0]
    first = leaves[0].removeprefix("scale_by_") if leaves else ""
    named = [name for name, _ in candidates if name == first]
    return (named or sorted(name for name, _ in candidates))[0]


def _bare(update) -> str:
    """A transformation's name inside another's: ``adam``, ``clip_by_global_norm``,
    ``chain(…)``."""
    outer = _outer(update)
    if outer in TRANSPARENT:
        inner = _inner(update)
        return _bare(inner[0]) if len(inner) == 1 else "?"
    alias = _alias_of(update)
    if alias is not None:
        return alias
    if outer == "named_chain":
        pairs = _cells(update).get("transforms", ())
        inner = ", ".join(f"{label}={_bare(tx.update)}" for label, tx in pairs)
        return f"named_chain({inner})"
    if outer == "inject_hyperparams":
        factory = _cells(update).get("inner_factory")
        return _factory_name(factory) if factory is not None else outer
    inner = _inner(update)
    if outer == "chain" or inner:
        return f"{outer}({', '.join(_bare(f) for f in inner)})"
    return outer


def _factory_name(factory: Callable) -> str:
    if isinstance(factory, functools.partial):
        factory = factory.func
    return getattr(factory, "__name__", type(factory).__name__)


def readable_name(tx: optax.GradientTransformation) -> str:
    """``optax.adam``, ``chain(clip_by_global_norm, adam)``, ``mymodule.my_update``."""
    name = _bare(tx.update)
    if "(" in name:
        return name
    module = (getattr(tx.update, "__module__", None) or "").split(".")[0]
    if inspect.ismethod(tx.update):
        module = (type(tx.update.__self__).__module__ or "").split(".")[0]
    return f"{module}.{name}" if module else name


_SEEN: dict[str, list] = {}  # readable name → the settings named by it, in order


def unique_name(base: str, held) -> str:
    """``base`` for the first settings named by it in this process, ``base#2`` for the next
    other settings, and so on; the same settings always get the same name."""
    seen = _SEEN.setdefault(base, [])
    if held not in seen:
        seen.append(held)
    index = seen.index(held)
    return base if index == 0 else f"{base}#{index + 1}"
