"""The registry of method names: built-ins, plugins from entry points, and registered classes.

A plugin is a Python entry point in the group ``deeplinear.methods``; its name is the method's
name in run files, and it points to a final ``AbstractMethod`` subclass, a factory
``f(learning_rate, **hyperparameters) -> optax.GradientTransformation`` or an optimistix
least-squares solver instance (``_foreign``). In a package's ``pyproject.toml``::

    [project.entry-points."deeplinear.methods"]
    my-sgd = "mypkg:my_sgd"

Plugins are found when the registry is first consulted (reading installed metadata, no import)
and each is imported when its name is first looked up, so ``import deeplinear`` and the CLI's
argument checks stay fast and a broken plugin stops only what uses it. A plugin whose name is a
built-in's, or another plugin's, is refused: one line naming the entry point and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points

from deeplinear.core.importable import importable
from deeplinear.errors import UsageError
from deeplinear.methods._base import AbstractMethod
from deeplinear.methods._foreign import method_class

PLUGIN_GROUP = "deeplinear.methods"


def describe(entry: EntryPoint) -> str:
    """``method plugin 'my-sgd' (my-sgd = mypkg:my_sgd, from mypkg 0.1)``."""
    dist = getattr(entry, "dist", None)
    source = f", from {dist.name} {dist.version}" if dist is not None else ""
    return f"method plugin {entry.name!r} ({entry.name} = {entry.value}{source})"


class Registry(Mapping[str, type[AbstractMethod]]):
    """Method name → class: the built-ins, the plugins, then classes given to ``register``."""

    def __init__(self, builtins):
        self._builtin = {cls.name: cls for cls in builtins}
        self._registered: dict[str, type[AbstractMethod]] = {}
        self._entries: dict[str, EntryPoint] | None = None  # found, not yet imported
        self._loaded: dict[str, type[AbstractMethod]] = {}

    def _plugins(self) -> dict[str, EntryPoint]:
        if self._entries is None:
            found: dict[str, EntryPoint] = {}
            for entry in entry_points(group=PLUGIN_GROUP):
                if entry.name in self._builtin:
                    raise UsageError(
                        f"{describe(entry)} has the name of a built-in method: rename the "
                        "entry point (or uninstall the package)"
                    )
                if entry.name in found and found[entry.name].value != entry.value:
                    raise UsageError(
                        f"{describe(entry)} has the name of {describe(found[entry.name])}: "
                        "rename one of the entry points (or uninstall one package)"
                    )
                if entry.name in self._registered:
                    raise UsageError(
                        f"{describe(entry)} has the name of the registered class "
                        f"{self._registered[entry.name].__qualname__}: rename one of them"
                    )
                found[entry.name] = entry
            self._entries = found
        return self._entries

    def refresh(self) -> None:
        """Find the plugins again (after installing or removing a package in this process)."""
        self._entries = None
        self._loaded.clear()

    def _load(self, name: str) -> type[AbstractMethod]:
        if name not in self._loaded:
            entry = self._plugins()[name]
            try:
                obj = entry.load()
            except Exception as error:  # any failure inside a user's package, named in one line
                text = str(error).splitlines()[0] if str(error) else ""
                raise UsageError(
                    f"{describe(entry)} failed to import ({type(error).__name__}: {text:.160}): "
                    "fix the package or uninstall it"
                ) from None
            self._loaded[name] = method_class(obj, name, describe(entry), instances=False)
        return self._loaded[name]

    def __getitem__(self, name: str) -> type[AbstractMethod]:
        if name in self._builtin:
            return self._builtin[name]
        if name in self._registered:
            return self._registered[name]
        if isinstance(name, str) and name in self._plugins():
            return self._load(name)
        raise KeyError(name)

    def __contains__(self, name) -> bool:
        return name in self._builtin or name in self._registered or name in self._plugins()

    def __iter__(self) -> Iterator[str]:
        yield from self._builtin
        yield from self._registered
        yield from self._plugins()

    def __len__(self) -> int:
        return len(self._builtin) + len(self._registered) + len(self._plugins())

    def builtin(self, name: str) -> bool:
        return name in self._builtin

    def register(self, cls: type[AbstractMethod]) -> type[AbstractMethod]:
        """Add a final ``AbstractMethod`` subclass under ``cls.name`` (usable as a decorator).
        Registering the same class again does nothing; another class with a taken name, or
        anything but a method class, is refused (one line)."""
        where = f"register({getattr(cls, '__qualname__', repr(cls))})"
        if not (isinstance(cls, type) and issubclass(cls, AbstractMethod)):
            raise UsageError(
                f"{where}: not a method class: give a final AbstractMethod subclass (wrap "
                "optax transformations and optimistix solvers with deeplinear.run)"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: the class has no name: set name = '...' on it")
        method_class(cls, name, where)  # final, named, declared
        if self.get_registered(name) is cls:
            return cls
        if name in self:
            raise UsageError(f"{where}: a method is already called {name!r}: choose another name")
        self._registered[name] = cls
        return cls

    def get_registered(self, name: str):
        return self._builtin.get(name) or self._registered.get(name) or self._loaded.get(name)

    def registered(self) -> tuple[type[AbstractMethod], ...]:
        """The classes given to ``register``, in order."""
        return tuple(self._registered.values())

    def portable(self, where: str) -> tuple[type[AbstractMethod], ...]:
        """The registered classes, for another process (a sweep's worker, a Ray task) to
        register: pickled by reference, so each must be importable there by its module and
        qualified name. One that is not (defined in ``__main__`` or inside a function) is refused
        in one line naming it and the fix; ``where`` names what needs them."""
        for name, cls in self._registered.items():
            if not importable(cls):
                raise UsageError(
                    f"method {name!r} (class {cls.__qualname__} in {cls.__module__}) was given to "
                    f"register() but {where} cannot import it: define it at the top level of an "
                    "importable module (not in __main__ or inside a function)"
                )
        return self.registered()

    def unregister(self, name: str) -> None:
        """Remove a class given to ``register`` (tests); built-ins and plugins stay."""
        if name not in self._registered:
            raise UsageError(f"unregister: {name!r} was not registered with register()")
        del self._registered[name]
