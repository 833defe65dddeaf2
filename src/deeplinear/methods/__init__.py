"""Optimizers behind one interface, and the registry of their names.

``METHODS`` maps a name to its class: the built-ins, plugins (entry points in the group
``deeplinear.methods``, see ``_plugins``) and classes given to ``register``. A new method is a
final ``AbstractMethod`` subclass whose fields are declared with ``number``, ``integer``,
``choice`` or ``flag``; optax transformations and optimistix solvers are wrapped (``_foreign``).
"""

from __future__ import annotations

import contextlib
import difflib

import pyarrow as pa

from deeplinear.errors import UsageError
from deeplinear.methods import _contract
from deeplinear.methods._base import AbstractMethod as AbstractMethod
from deeplinear.methods._base import Hyper as Hyper
from deeplinear.methods._base import changed_hyperparameters as changed_hyperparameters
from deeplinear.methods._base import check_names as check_names
from deeplinear.methods._base import choice as choice
from deeplinear.methods._base import declarations as declarations
from deeplinear.methods._base import flag as flag
from deeplinear.methods._base import integer as integer
from deeplinear.methods._base import number as number
from deeplinear.methods._base import refusal as refusal
from deeplinear.methods._baselines import NuclearNorm as NuclearNorm
from deeplinear.methods._baselines import SoftImpute as SoftImpute
from deeplinear.methods._levenberg_marquardt import GaussNewtonCG as GaussNewtonCG
from deeplinear.methods._levenberg_marquardt import LevenbergMarquardt as LevenbergMarquardt
from deeplinear.methods._optax import GD as GD
from deeplinear.methods._optax import LBFGS as LBFGS
from deeplinear.methods._optax import AbstractAdam as AbstractAdam
from deeplinear.methods._optax import AbstractGD as AbstractGD
from deeplinear.methods._optax import AbstractMomentum as AbstractMomentum
from deeplinear.methods._optax import AbstractOptaxMethod as AbstractOptaxMethod
from deeplinear.methods._optax import Adagrad as Adagrad
from deeplinear.methods._optax import Adam as Adam
from deeplinear.methods._optax import AdamW as AdamW
from deeplinear.methods._optax import Momentum as Momentum
from deeplinear.methods._optax import Muon as Muon
from deeplinear.methods._optax import Nesterov as Nesterov
from deeplinear.methods._optax import RMSProp as RMSProp
from deeplinear.methods._peers import OptimistixDogleg as OptimistixDogleg
from deeplinear.methods._peers import OptimistixGN as OptimistixGN
from deeplinear.methods._peers import OptimistixLM as OptimistixLM
from deeplinear.methods._plugins import PLUGIN_GROUP as PLUGIN_GROUP
from deeplinear.methods._plugins import Registry as Registry
from deeplinear.methods._scipy import ScipyLM as ScipyLM
from deeplinear.methods._scipy import ScipyTRF as ScipyTRF
from deeplinear.methods._seed_lm import SeedLM as SeedLM
from deeplinear.methods._seed_lm import min_norm_gauss_newton_step as min_norm_gauss_newton_step
from deeplinear.methods._structured import ALS as ALS
from deeplinear.methods._structured import NaturalGradient as NaturalGradient
from deeplinear.methods._structured import PrecGD as PrecGD
from deeplinear.methods._structured import ScaledGD as ScaledGD
from deeplinear.methods._tf1 import TF1GD as TF1GD
from deeplinear.methods._tf1 import TF1Adam as TF1Adam

_ALL = (
    GD,
    Momentum,
    Nesterov,
    Adam,
    AdamW,
    RMSProp,
    Adagrad,
    LBFGS,
    Muon,
    TF1GD,
    TF1Adam,
    SeedLM,
    ScaledGD,
    PrecGD,
    NaturalGradient,
    ALS,
    LevenbergMarquardt,
    GaussNewtonCG,
    OptimistixLM,
    OptimistixGN,
    OptimistixDogleg,
    ScipyLM,
    ScipyTRF,
    NuclearNorm,
    SoftImpute,
)
METHODS: Registry = Registry(_ALL)
register = METHODS.register


def make_method(name: str, **hyperparameters) -> AbstractMethod:
    """The method registered as ``name`` with the given hyperparameters."""
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(METHODS)}"
        raise UsageError(f"unknown method {name!r}: {hint}")
    cls = METHODS[name]
    check_names(cls, hyperparameters)
    return cls(**hyperparameters)


def check_method(method, shapes, k) -> None:
    """Refuse in one line, before anything compiles, a method from outside the lab (a plugin, a
    registered class, a wrapped object) whose traced step breaks the loop's contract
    (``_contract``) for layer ``shapes`` and ``k`` (``cost.rows_of``); built-ins pass."""
    origin = METHODS.origin(method)
    if origin is None:
        return
    shapes = tuple(tuple(int(n) for n in s) for s in shapes)
    try:
        hash(method)
    except TypeError:  # an unhashable method: checked every time
        return _contract.check_step.__wrapped__(method, shapes, k, *origin)
    _contract.check_step(method, shapes, k, *origin)


def blamed(method):
    """A context naming ``method`` (from outside the lab) in one line for an error raised while
    its compiled steps run; a built-in's errors pass through."""
    origin = METHODS.origin(method)
    return contextlib.nullcontext() if origin is None else _contract.blamed(*origin, method.in_loop)


def recorded_columns() -> dict[str, pa.DataType]:
    """The union of every usable method's ``columns`` (what ``record(state)`` returns): the
    method columns a sweep's group files all carry (null where a method has none). A plugin that
    cannot be used adds none (``Registry.refusals``)."""
    union: dict[str, pa.DataType] = {}
    owner: dict[str, str] = {}
    for name, cls in METHODS.usable().items():
        for column, kind in getattr(cls, "columns", {}).items():
            if column in union and union[column] != kind:
                raise UsageError(
                    f"method {name!r} records column {column!r} as {kind}, but {owner[column]!r} "
                    f"records it as {union[column]}: give one of them another column name"
                )
            union.setdefault(column, kind)
            owner.setdefault(column, name)
    return union
