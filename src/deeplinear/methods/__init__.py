"""Optimizers behind one interface, and the registry of their names.

``METHODS`` maps a name to its class: the built-ins, plugins (entry points in the group
``deeplinear.methods``, see ``_plugins``) and classes given to ``register``. A new method is a
final ``AbstractMethod`` subclass whose fields are declared with ``number``, ``integer``,
``choice`` or ``flag``; optax transformations and optimistix solvers are wrapped (``_foreign``).
"""

from __future__ import annotations

import difflib

import pyarrow as pa

from ..errors import UsageError
from ._base import AbstractMethod as AbstractMethod
from ._base import Hyper as Hyper
from ._base import choice as choice
from ._base import declarations as declarations
from ._base import flag as flag
from ._base import integer as integer
from ._base import number as number
from ._baselines import NuclearNorm as NuclearNorm
from ._baselines import SoftImpute as SoftImpute
from ._levenberg_marquardt import GaussNewtonCG as GaussNewtonCG
from ._levenberg_marquardt import LevenbergMarquardt as LevenbergMarquardt
from ._optax import GD as GD
from ._optax import LBFGS as LBFGS
from ._optax import AbstractAdam as AbstractAdam
from ._optax import AbstractGD as AbstractGD
from ._optax import AbstractMomentum as AbstractMomentum
from ._optax import AbstractOptaxMethod as AbstractOptaxMethod
from ._optax import Adagrad as Adagrad
from ._optax import Adam as Adam
from ._optax import AdamW as AdamW
from ._optax import Momentum as Momentum
from ._optax import Muon as Muon
from ._optax import Nesterov as Nesterov
from ._optax import RMSProp as RMSProp
from ._peers import OptimistixDogleg as OptimistixDogleg
from ._peers import OptimistixGN as OptimistixGN
from ._peers import OptimistixLM as OptimistixLM
from ._plugins import PLUGIN_GROUP as PLUGIN_GROUP
from ._plugins import Registry as Registry
from ._scipy import ScipyLM as ScipyLM
from ._scipy import ScipyTRF as ScipyTRF
from ._seed_lm import SeedLM as SeedLM
from ._seed_lm import min_norm_gauss_newton_step as min_norm_gauss_newton_step
from ._structured import ALS as ALS
from ._structured import NaturalGradient as NaturalGradient
from ._structured import PrecGD as PrecGD
from ._structured import ScaledGD as ScaledGD
from ._tf1 import TF1GD as TF1GD
from ._tf1 import TF1Adam as TF1Adam

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
    fields = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(hyperparameters) - fields)
    if unknown:
        expected = ", ".join(sorted(fields)) or "none"
        raise UsageError(f"{name}: unknown hyperparameter {unknown[0]!r} (it takes: {expected})")
    return cls(**hyperparameters)


def recorded_columns() -> dict[str, pa.DataType]:
    """The union of every registered method's ``columns`` (what ``record(state)`` returns):
    the method columns a sweep's group files all carry (null where a method has none)."""
    union: dict[str, pa.DataType] = {}
    owner: dict[str, str] = {}
    for name, cls in METHODS.items():
        for column, kind in getattr(cls, "columns", {}).items():
            if column in union and union[column] != kind:
                raise UsageError(
                    f"method {name!r} records column {column!r} as {kind}, but {owner[column]!r} "
                    f"records it as {union[column]}: give one of them another column name"
                )
            union.setdefault(column, kind)
            owner.setdefault(column, name)
    return union
