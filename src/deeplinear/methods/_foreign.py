"""Users' optimizers as methods: optax transformations and optimistix least-squares solvers.

Three kinds of foreign object become method classes that run through the same runner, table,
verdicts and sweeps as the built-ins:

- an optax **factory of the learning rate**, ``f(learning_rate, **hyperparameters) ->
  optax.GradientTransformation``: the learning rate goes through ``optax.inject_hyperparams``
  (``AbstractOptaxMethod``), so a grid of learning rates is one compiled program; the factory's
  keyword parameters with a default become hyperparameters, typed by the default (float → a
  finite number, int → an integer, bool → true or false, str → any string; other defaults are
  kept and not exposed);
- an optax **transformation** (``optax.adam(1e-2)``): its learning rate is fixed inside it, so
  the runner's learning rate is 1, recorded as 1, and not used;
- an optimistix **least-squares solver** instance (``optx.GaussNewton(rtol=0, atol=0,
  linear_solver=lineax.SVD())``, Levenberg-Marquardt, Dogleg or a user's
  ``optx.AbstractLeastSquaresSolver``), one solver step per step on the reduced residual
  (``AbstractOptimistixMethod``); it has no learning rate (the runner's is 1 and ignored).

Each wrapped object gets its own class (cached by the object's identity), so methods hash and
compare stably and the runner's compiled programs are reused.

FLOPs of an optax method: the gradient's model, ``3 · cost.loss_flops``, plus the update itself
as XLA counts it (``jax.jit(update).lower(...).compile().cost_analysis()["flops"]``: 2 per
multiply-add in products, 1 per elementwise operation, the loss evaluations of a line search
included), measured once per layer shapes. Solvers use the optimistix peers' model.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import optax

from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError
from deeplinear.methods._base import AbstractMethod, Hyper, choice, declarations
from deeplinear.methods._contract import abstract_arguments
from deeplinear.methods._optax import AbstractOptaxMethod
from deeplinear.methods._optax_names import readable_name, settings, unique_name
from deeplinear.methods._peers import AbstractOptimistixMethod
from deeplinear.methods.cost import loss_flops


@dataclasses.dataclass(frozen=True)
class AnyText:
    """The declaration of a string hyperparameter that takes any string (a factory's ``str``
    keyword); the same interface as ``Hyper`` (``describe``, ``check``)."""

    kind: ClassVar[str] = "text"
    optional: ClassVar[bool] = False

    def describe(self) -> str:
        return "any string"

    def check(self, method: str, field: str, value) -> None:
        if not isinstance(value, str):
            raise UsageError(f"{method}.{field} must be {self.describe()}, got {value!r}")


def declaration_for(default) -> Hyper | AnyText | None:
    """A factory keyword's declaration, from the type of its default (None: not exposed)."""
    if isinstance(default, bool):
        return Hyper("flag")
    if isinstance(default, int):
        return Hyper("integer", high_open=False)
    if isinstance(default, float) and math.isfinite(default):
        return Hyper("number")
    if isinstance(default, str):
        return AnyText()
    return None


@dataclasses.dataclass(frozen=True)
class AbstractForeignOptax(AbstractOptaxMethod):
    """An optax transformation from outside deeplinear; FLOPs measured by XLA (module doc)."""

    @abc.abstractmethod
    def transformation(self, learning_rate) -> optax.GradientTransformation: ...

    def flops(self, shapes, k) -> tuple[float, float]:

        shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        return 3 * loss_flops(shapes, k) + measured_update_flops(self, shapes, k), 0.0


@dataclasses.dataclass(frozen=True)
class AbstractOptaxFactory(AbstractForeignOptax):
    """``factory(learning_rate, **hyperparameters)``; the class holds the factory."""

    factory: ClassVar[Callable]  # a staticmethod
    factory_parameters: ClassVar[tuple[str, ...]]

    def transformation(self, learning_rate):
        keywords = {name: getattr(self, name) for name in self.factory_parameters}
        return self.factory(learning_rate, **keywords)


@dataclasses.dataclass(frozen=True)
class AbstractOptaxTransformation(AbstractForeignOptax):
    """A transformation with its learning rate inside: the runner's learning rate is not used
    (run it at 1, as ``deeplinear.run`` does and records)."""

    wrapped: ClassVar[optax.GradientTransformation]

    def transformation(self, learning_rate):
        return self.wrapped


@dataclasses.dataclass(frozen=True)
class AbstractSolverInstance(AbstractOptimistixMethod):
    """An optimistix least-squares solver instance; its own linear solver is used (the
    ``linear_solver`` field says so and takes no other value)."""

    linear_solver: str = choice("own", "own")
    wrapped: ClassVar[Any]

    def solver(self):
        return self.wrapped


@functools.lru_cache(maxsize=256)
def measured_update_flops(method, shapes: tuple, k) -> float:
    """XLA's FLOP count of one ``method.step`` for layer ``shapes`` (a tuple of pairs) and
    ``k`` rows of the reduced residual (None: population), compiled once per method and shapes
    on abstract arguments (nothing is run)."""

    spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float64)
    weights, objective = abstract_arguments(shapes, k)
    state = jax.eval_shape(lambda w, o: method.init(w, o, 1.0), weights, objective)

    def update(weights, state, objective, loss, grads):
        return method.step(weights, state, objective, loss, grads)

    compiled = jax.jit(update).lower(weights, state, objective, spec(), weights).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older JAX: one dict per device
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))


_CLASSES: dict[int, tuple[object, type[AbstractMethod]]] = {}  # id(wrapped) → (wrapped, class)


def _class_name(name: str) -> str:
    parts = "".join(c if c.isalnum() else "-" for c in name).split("-")
    return "".join(part[:1].upper() + part[1:] for part in parts if part)


def is_solver(obj) -> bool:
    """Whether ``obj`` is an optimistix least-squares solver instance (optimistix, slow to
    import, is imported only for objects whose class comes from it)."""
    if isinstance(obj, type) or not _from_optimistix(type(obj)):
        return False
    import optimistix as optx

    return isinstance(obj, optx.AbstractLeastSquaresSolver)


def _from_optimistix(cls: type) -> bool:
    return any((c.__module__ or "").startswith("optimistix") for c in cls.__mro__)


def default_name(obj) -> str:
    """A method name for an unregistered foreign object, unique in this process: a factory
    ``optax.adam``, a transformation named from optax (``optax.lion``, ``chain(clip_by_global_norm,
    adam)``; ``_optax_names``), ``optimistix.Dogleg``; ``…#2`` for the second object of that
    name whose settings differ."""
    if isinstance(obj, optax.GradientTransformation):
        return unique_name(readable_name(obj), settings(obj))
    return unique_name(_plain_name(obj), settings(obj))


def _plain_name(obj) -> str:
    if isinstance(obj, optax.GradientTransformation):
        return readable_name(obj)
    if callable(obj) and not is_solver(obj) and hasattr(obj, "__qualname__"):
        module = (getattr(obj, "__module__", None) or "").split(".")[0]
        qualname = obj.__qualname__.replace("<lambda>", "lambda").replace(".<locals>", "")
        return f"{module}.{qualname}" if module else qualname
    return f"{type(obj).__module__.split('.')[0]}.{type(obj).__name__}"


def method_class(obj, name: str, where: str, *, instances: bool = True) -> type[AbstractMethod]:
    """The method class for ``obj`` called ``name``: ``obj`` itself when it is a final
    ``AbstractMethod`` subclass, else a wrapper class (cached per object). ``where`` names the
    object in errors; ``instances=False`` refuses an optax transformation instance (a plugin
    should give a factory, so the run file's learning rates apply)."""
    if isinstance(obj, type) and issubclass(obj, AbstractMethod):
        return _checked_method(obj, name, where)
    if id(obj) in _CLASSES and _CLASSES[id(obj)][0] is obj:
        cls = _CLASSES[id(obj)][1]
        if cls.name == name:
            return cls
    if isinstance(obj, optax.GradientTransformation):
        if not instances:
            raise UsageError(
                f"{where} is an optax transformation with a fixed learning rate: point it to a "
                "factory f(learning_rate, ...) instead, so the run file's learning rates apply"
            )
        cls = _make_class(name, AbstractOptaxTransformation, {"wrapped": obj}, [], obj)
        cls.description = "an optax transformation (learning rate fixed inside it; run at 1)"
    elif is_solver(obj):
        namespace = {"wrapped": obj, "solver_name": type(obj).__name__}
        cls = _make_class(name, AbstractSolverInstance, namespace, [], obj)
        cls.description = f"optimistix solver {type(obj).__name__} (lr ignored: use 1)"
    elif isinstance(obj, type) and _is_solver_class(obj):
        raise UsageError(
            f"{where} is the optimistix solver class {obj.__name__}: point it to an instance, "
            f"e.g. {obj.__name__}(rtol=0.0, atol=0.0)"
        )
    elif callable(obj) and not isinstance(obj, type):
        cls = _factory_class(obj, name, where)
    else:
        raise UsageError(
            f"{where} is {type(obj).__name__} {obj!r:.60}, not a method: give a final "
            "AbstractMethod subclass, a factory f(learning_rate, **hyperparameters) returning "
            "an optax.GradientTransformation, or an optimistix least-squares solver instance"
        )
    _CLASSES[id(obj)] = (obj, cls)
    return cls


def _is_solver_class(obj: type) -> bool:
    if not _from_optimistix(obj):
        return False
    import optimistix as optx

    return issubclass(obj, optx.AbstractLeastSquaresSolver)


def _checked_method(cls: type[AbstractMethod], name: str, where: str) -> type[AbstractMethod]:
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise UsageError(f"{where}: {cls.__name__} is abstract (it lacks {missing}): implement it")
    if getattr(cls, "name", None) != name:
        raise UsageError(
            f"{where}: {cls.__name__}.name is {getattr(cls, 'name', None)!r}, not {name!r}: "
            "make the class's name and the entry point's name the same"
        )
    try:
        declarations(cls)
    except TypeError as error:
        fix = "declare it with number, integer, choice or flag"
        raise UsageError(f"{where}: {error}: {fix}") from None
    return cls


def _factory_class(factory: Callable, name: str, where: str) -> type[AbstractMethod]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: cannot read the signature of {factory!r}") from None
    parameters = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not parameters or parameters[0].kind not in positional:
        raise UsageError(
            f"{where}: a factory takes the learning rate as its first argument, "
            f"f(learning_rate, **hyperparameters); {factory!r:.60} does not"
        )
    taken = {f.name for f in dataclasses.fields(AbstractOptaxFactory)}
    fields = []
    for parameter in parameters[1:]:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if parameter.default is inspect.Parameter.empty:
            raise UsageError(
                f"{where}: the factory's parameter {parameter.name!r} has no default: give it one "
                "(only the learning rate is passed without a default)"
            )
        spec = declaration_for(parameter.default)
        if spec is None:
            continue  # kept at its default, not a hyperparameter
        if parameter.name in taken:
            raise UsageError(
                f"{where}: the factory's parameter {parameter.name!r} is a name every optax "
                f"method has ({', '.join(sorted(taken))}): rename it"
            )
        field = dataclasses.field(default=parameter.default, metadata={"hyper": spec})
        fields.append((parameter.name, type(parameter.default), field))
    try:
        made = factory(1.0)
    except Exception as error:  # a user's factory: any failure is theirs, named in one line
        failed = f"{error!r:.200}"
        raise UsageError(f"{where}: calling it with learning rate 1.0 failed: {failed}") from None
    if not isinstance(made, optax.GradientTransformation):
        raise UsageError(
            f"{where}: factory(1.0) returned {type(made).__name__}, not an "
            "optax.GradientTransformation: return one (e.g. optax.sgd(learning_rate))"
        )
    namespace = {
        "factory": staticmethod(factory),
        "factory_parameters": tuple(f[0] for f in fields),
    }
    cls = _make_class(name, AbstractOptaxFactory, namespace, fields, factory)
    cls.description = f"optax factory {_plain_name(factory)}"
    return cls


def _make_class(name, base, namespace, fields, obj) -> type[AbstractMethod]:
    reference = _plain_name(obj)
    namespace = {
        **namespace,
        "name": name,
        "label": name,
        "description": "",
        "reference": f"user-supplied ({reference})",
        "__module__": __name__,
        "__doc__": f"``{name}``: {reference}, wrapped by deeplinear.methods._foreign.",
    }
    return dataclasses.make_dataclass(
        _class_name(name) or "Foreign", fields, bases=(base,), namespace=namespace, frozen=True
    )
