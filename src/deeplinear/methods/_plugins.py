"""The registry of method names: built-ins, plugins from entry points, and registered classes.

A plugin is a Python entry point in the group ``deeplinear.methods``; its name is the method's
name in run files, and it points to a final ``AbstractMethod`` subclass, a factory
``f(learning_rate, **hyperparameters) -> optax.GradientTransformation`` or an optimistix
least-squares solver instance (``_foreign``). In a package's ``pyproject.toml``::

    [project.entry-points."deeplinear.methods"]
    my-sgd = "mypkg:my_sgd"

Plugins are found when the registry is first consulted (reading installed metadata, no import)
and each is imported when its name is first looked up, so ``import deeplinear`` and the CLI's
argument checks stay fast. **A plugin fails alone**: one that fails to import or is not a method,
one whose name is a built-in's (built-in names cannot be shadowed: the built-in is used), a
registered class's or another plugin's (both refused), or whose recorded column clashes with a
built-in's, is refused for its own name only, in one line naming the entry point, the error and
the fix (``refusals``: ``deeplinear methods`` prints them on stderr); everything else, including
``usable`` (what listings and sweeps' schemas read), goes on without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points

from deeplinear.core.importable import importable
from deeplinear.errors import UsageError
from deeplinear.methods._base import AbstractMethod
from deeplinear.methods._contract import one_line
from deeplinear.methods._foreign import method_class

PLUGIN_GROUP = "deeplinear.methods"


def describe(entry: EntryPoint) -> str:
    """``method plugin 'my-sgd' (my-sgd = mypkg:my_sgd, from mypkg 0.1)``."""
    dist = getattr(entry, "dist", None)
    source = f", from {dist.name} {dist.version}" if dist is not None else ""
    return f"method plugin {entry.name!r} ({entry.name} = {entry.value}{source})"


def _dist(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return dist.name if dist is not None else "its package"


class Registry(Mapping[str, type[AbstractMethod]]):
    """Method name → class: the built-ins, the plugins, then classes given to ``register``."""

    def __init__(self, builtins):
        self._builtin = {cls.name: cls for cls in builtins}
        self._registered: dict[str, type[AbstractMethod]] = {}
        self._entries: dict[str, EntryPoint] | None = None  # found, not yet imported
        self._loaded: dict[str, type[AbstractMethod]] = {}
        self._refused: dict[str, str] = {}  # plugin name → why it is not used (one line)

    def _plugins(self) -> dict[str, EntryPoint]:
        if self._entries is None:
            found: dict[str, EntryPoint] = {}
            refused: dict[str, str] = {}
            for entry in entry_points(group=PLUGIN_GROUP):
                name, fix = entry.name, f"rename the entry point (or uninstall {_dist(entry)})"
                if name in self._builtin:
                    refused.setdefault(
                        name,
                        f"{describe(entry)} is refused: built-in names cannot be shadowed (the "
                        f"built-in {name} is used): {fix}",
                    )
                elif name in self._registered:
                    refused[name] = (
                        f"{describe(entry)} is refused: the registered class "
                        f"{self._registered[name].__qualname__} has its name: {fix}"
                    )
                elif name in refused:
                    continue  # a third entry of a name already refused
                elif name in found and found[name].value != entry.value:
                    refused[name] = (
                        f"{describe(entry)} and {describe(found.pop(name))} have one name: "
                        "rename one of the entry points (or uninstall one package)"
                    )
                else:
                    found[name] = entry
            self._entries, self._refused = found, refused
        return self._entries

    def refresh(self) -> None:
        """Find the plugins again (after installing or removing a package in this process)."""
        self._entries = None
        self._refused = {}
        self._loaded.clear()

    def _load(self, name: str) -> type[AbstractMethod]:
        if name in self._refused:
            raise UsageError(self._refused[name])
        if name not in self._loaded:
            entry = self._plugins()[name]
            try:
                self._loaded[name] = self._checked(entry)
            except UsageError as error:
                self._refused[name] = str(error)
                raise
        return self._loaded[name]

    def _checked(self, entry: EntryPoint) -> type[AbstractMethod]:
        """The entry point's method class, or one line saying why it cannot be one."""
        try:
            obj = entry.load()
        except Exception as error:  # any failure inside a user's package, named in one line
            raise UsageError(
                f"{describe(entry)} failed to load ({one_line(error)}): fix the package or "
                f"uninstall {_dist(entry)}"
            ) from None
        cls = method_class(obj, entry.name, describe(entry), instances=False)
        for column, kind in getattr(cls, "columns", {}).items():
            for other in (*self._builtin.values(), *self._registered.values()):
                theirs = other.columns.get(column, kind)
                if theirs != kind:
                    raise UsageError(
                        f"{describe(entry)} records column {column!r} as {kind}, but "
                        f"{other.name!r} records it as {theirs}: give it another column name"
                    )
        return cls

    def refusals(self) -> dict[str, str]:
        """Every plugin that cannot be used, tried now: name → the one line saying why."""
        for name in self._plugins():
            with contextlib.suppress(UsageError):
                self._load(name)
        return dict(self._refused)

    def usable(self) -> dict[str, type[AbstractMethod]]:
        """Name → class of every method that can be used (plugins imported now); the refused
        ones are in ``refusals``."""
        refused = self.refusals()
        return {name: self[name] for name in self if name not in refused or self.builtin(name)}

    def __getitem__(self, name: str) -> type[AbstractMethod]:
        if name in self._builtin:
            return self._builtin[name]
        if name in self._registered:
            return self._registered[name]
        if isinstance(name, str) and name in self._plugin_names():
            return self._load(name)
        raise KeyError(name)

    def _plugin_names(self) -> list[str]:
        """Plugins found and plugin names refused (but not those of built-ins or registered
        classes): looking one up loads it or says in one line why it cannot be used."""
        found = self._plugins()
        refused = (n for n in self._refused if n not in self._builtin and n not in self._registered)
        return [*found, *(n for n in refused if n not in found)]

    def __contains__(self, name) -> bool:
        return name in self._builtin or name in self._registered or name in self._plugin_names()

    def __iter__(self) -> Iterator[str]:
        yield from self._builtin
        yield from self._registered
        yield from self._plugin_names()

    def __len__(self) -> int:
        return len(self._builtin) + len(self._registered) + len(self._plugin_names())

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

    def origin(self, method) -> tuple[str, str] | None:
        """(who ``method`` is, the end of the advice on fixing it) for a method from outside
        the lab (``_contract`` checks it); None for a built-in, whose tests are its contract."""
        cls, name = type(method), getattr(method, "name", "?")
        if self._builtin.get(name) is cls:
            return None
        if self._loaded.get(name) is cls and self._entries and name in self._entries:
            entry = self._entries[name]
            return describe(entry), f" or uninstall {_dist(entry)}"
        if self._registered.get(name) is cls:
            return f"method {name!r} (class {cls.__qualname__}, given to register)", ""
        return f"method {name!r}", ""

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
