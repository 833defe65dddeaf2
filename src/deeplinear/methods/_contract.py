"""The loop's contract, checked once for a method from outside the lab before it runs.

A plugin, a registered class or an object given to ``deeplinear.run`` is traced once on abstract
arguments (``jax.eval_shape``: nothing runs, nothing compiles) for each layer shapes and problem
kind: ``init``, ``start`` and one ``step``. The step must return ``(weights, state)`` with
weights and state of the same pytree structure, shapes and dtypes as those it was given (what
``lax.scan`` carries); an optax method's raw ``updates`` must match the weights too (``optax.
apply_updates`` would broadcast a scalar or a ``(1,)`` update). A failure while tracing, or a
mismatch, is one ``UsageError`` naming the method, the exception or the offending leaf's expected
and actual shape, and the fix (``check_step``); an error raised while a method runs (a callback
of its own) is named the same way (``blamed``). Built-ins are not checked here: their tests are
their contract. A non-finite result is not an error: the run has diverged, which is a result.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError
from deeplinear.methods._optax import AbstractOptaxMethod
from deeplinear.methods.cost import Measurements
from deeplinear.objectives.measurement import Completion, Sensing, abstract_lines
from deeplinear.objectives.objective import Objective


def one_line(error: BaseException) -> str:
    """``ValueError: the first line of its message`` (at most 160 characters of it); for an
    error in a callback, the callback's own exception (the last line of XLA's message)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if isinstance(error, jax.errors.JaxRuntimeError) and "callback" in str(error) and lines:
        return f"{lines[-1]:.160}"
    return f"{type(error).__name__}: {lines[0]:.160}" if lines else type(error).__name__


def abstract_arguments(shapes: tuple, k) -> tuple[tuple, object]:
    """Abstract weights of layer ``shapes`` and the abstract objective with ``k`` rows of the
    reduced residual (None: population; ``Measurements``: completion or sensing)."""
    spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float64)
    d_out, d_in = shapes[0][0], shapes[-1][1]
    if isinstance(k, Measurements):  # m measurements, as abstract arrays
        m = k.count
        if k.dense:
            objective = Sensing(spec(m, d_out * d_in), spec(m), spec(m), spec())
        else:
            index = jax.ShapeDtypeStruct((m,), jnp.int32)
            lines = abstract_lines(d_out, m), abstract_lines(d_in, m)
            objective = Completion(index, index, spec(m), spec(m), spec(), *lines)
    else:
        objective = Objective(
            None if k is None else spec(k, d_in),
            spec(d_out, d_in if k is None else k),
            spec(),
            spec(d_in),
            spec(),
        )
    return tuple(spec(*s) for s in shapes), objective


MEMBERS = 2  # the batch the check traces, vmapped as the runner does


@functools.lru_cache(maxsize=256)
def check_step(method, shapes: tuple, k, who: str, fix: str) -> None:
    """Refuse ``method`` in one line unless one traced step keeps to the contract (module doc);
    ``who`` names it (``method plugin 'x' (x = pkg:f, from pkg 0.1)``), ``fix`` ends the advice
    (``or uninstall pkg``). Traced under ``vmap`` over a batch of members, as ``runner.run``
    runs it; a problem the method does not support is left to ``runner.run``."""
    if not method.in_loop:
        return
    weights, objective = abstract_arguments(shapes, k)
    try:
        refused = method.supports(objective, [tuple(s) for s in shapes]) is not None
    except Exception:  # it reads the concrete objective: runner.run asks it that one
        refused = True
    if refused:
        return
    trace = functools.partial(_traced, who, fix)
    rates = jax.ShapeDtypeStruct((MEMBERS,), jnp.float64)
    state = trace("init", method.init, (None, None, 0), weights, objective, rates)
    start = trace("start", method.start, (None, 0, None), weights, _batched(state), objective)
    _same(who, fix, "start", "weights", weights, start)
    args = (_batched(weights), _batched(state), objective, rates, _batched(weights))
    axes = (0, 0, None, 0, 0)  # weights, state, objective (shared), loss, gradient
    if isinstance(method, AbstractOptaxMethod):
        updates, _ = trace("update", method.transform, axes, *args)
        _same(who, fix, "update", "updates", weights, updates)
    stepped = trace("step", method.step, axes, *args)
    if not (isinstance(stepped, tuple | list) and len(stepped) == 2):
        raise UsageError(
            f"{who}: its step returned {type(stepped).__name__}, not a pair (weights, state): "
            f"return the new weights and the new state{fix}"
        )
    _same(who, fix, "step", "weights", weights, stepped[0])
    _same(who, fix, "step", "state", state, stepped[1])
    trace("record", method.record, 0, _batched(state))


def _batched(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((MEMBERS, *x.shape), x.dtype), tree)


def _traced(who: str, fix: str, phase: str, function, in_axes, *args):
    """``function``'s abstract result for one member, traced under ``vmap``."""
    try:
        out = jax.eval_shape(jax.vmap(function, in_axes=in_axes), *args)
    except Exception as error:  # a user's code: whatever it raises is theirs, in one line
        raise UsageError(
            f"{who} failed in its {phase} ({one_line(error)}): fix its {phase}{fix}"
        ) from None
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), out)


def _same(who: str, fix: str, phase: str, what: str, expected, got) -> None:
    """``got`` has ``expected``'s pytree structure, and each leaf its shape and dtype."""
    like = "the state it was given" if what == "state" else "the weights"
    want, have = jax.tree_util.tree_structure(expected), jax.tree_util.tree_structure(got)
    if want != have:
        raise UsageError(
            f"{who}: its {phase} returned {what} structured as {have!s:.120}, expected "
            f"{want!s:.120}: return {what} structured like {like}{fix}"
        )
    leaves = jax.tree_util.tree_flatten_with_path(expected)[0]
    for (path, e), g in zip(leaves, jax.tree_util.tree_leaves(got)):
        name = f"{what}{jax.tree_util.keystr(path)}"
        shape, dtype = tuple(jnp.shape(g)), jnp.result_type(g)
        if shape != tuple(e.shape):
            raise UsageError(
                f"{who}: its {phase} returned {name} of shape {shape}, expected "
                f"{tuple(e.shape)}: return {what} shaped like {like} (nothing is broadcast){fix}"
            )
        if dtype != e.dtype:
            raise UsageError(
                f"{who}: its {phase} returned {name} as {dtype}, expected {e.dtype}: return "
                f"{what} of the dtypes of {like}{fix}"
            )


class _Quiet(logging.Filter):
    def filter(self, record) -> bool:
        return False


@contextlib.contextmanager
def blamed(who: str, fix: str, in_loop: bool = True):
    """Name ``who`` in one line (``UsageError``) for an error raised while it runs: in the loop,
    one from its compiled steps (a callback of its own, whose traceback JAX would also log);
    out of it (``run_one``, Python), any."""
    caught = jax.errors.JaxRuntimeError if in_loop else Exception
    quiet, logger = _Quiet(), logging.getLogger("jax._src.callback")
    logger.addFilter(quiet)
    try:
        yield
    except UsageError:
        raise
    except caught as error:
        raise UsageError(f"{who} failed while running ({one_line(error)}): fix it{fix}") from None
    finally:
        logger.removeFilter(quiet)
