"""One plugin mechanism for connectors, outgoing transports and actions: classes found by type name.

A ``Registry`` holds one kind of plugin (Kombu and keyring style):

- **built-ins** are a visible table ``name -> "module:Class"``, imported only when a name is asked
  for (a POP3 user never imports exchangelib). The same names are declared under the registry's
  entry-point group in pyproject.toml, so that built-ins and third-party plugins are registered
  the same way; a test keeps the table and pyproject.toml in step.
- **third-party plugins** come from the entry-point group (``importlib.metadata`` is imported only
  when a name is not built in, or when every name is listed).
- a plugin that cannot be loaded (missing dependency, crash at import, wrong object) is **reported**
  as a ``PluginError`` naming it, never raised as a traceback, and does not break the others.
- a class whose optional libraries are missing says how to get them: it lists the import names it
  needs in ``requires`` and the extra that installs them in ``extra``, e.g. ``extra = "exchange"``
  gives "install it with: pip install 'mailgate[exchange]'".
- an unknown name gets a did-you-mean (and, where the registry says so, the list of known names).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from engine.errors import MailgateError, did_you_mean

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger(__name__)
P = TypeVar("P")
OWN_DISTRIBUTION = "mailgate"


class PluginError(MailgateError):
    """No plugin is registered under that name, or its class cannot be loaded."""


class Registry(Generic[P]):
    """The classes of one kind of plugin (subclasses of ``base``), found by name.

    ``group`` is the entry-point group, ``builtin`` the table of built-in ``name -> "module:Class"``.
    Messages call a plugin ``{noun} 'name'`` and an unknown name ``unknown {type_noun} 'name'``;
    ``list_known`` appends every known name to the latter. Failures raise ``error`` (a PluginError).
    """

    def __init__(
        self,
        group: str,
        builtin: Mapping[str, str],
        base: type[P],
        *,
        noun: str,
        type_noun: str | None = None,
        error: type[PluginError] = PluginError,
        list_known: bool = True,
    ) -> None:
        self.group = group
        self.builtin = builtin
        self.base = base
        self.noun = noun
        self.type_noun = type_noun or noun
        self.error = error
        self.list_known = list_known
        self._registered: dict[str, type[P]] = {}

    def names(self) -> list[str]:
        """Every name: built-in ones, registered ones and those of installed packages' entry points."""
        return sorted({*self.builtin, *self._registered, *_entry_points(self.group)})

    def register(self, cls: type[P], name: str | None = None) -> type[P]:
        """Add a class under ``name`` (default: its ``name`` attribute) in this process only.

        For tests and programs embedding mailgate; packages register through the entry-point group.
        Usable as a class decorator.
        """
        key = name or str(getattr(cls, "name", ""))
        if not key:
            raise TypeError(f"{cls.__name__} has no name")
        self._registered[key] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Remove a class added with ``register`` (tests that register one for a while)."""
        self._registered.pop(name, None)

    def load(self, name: str) -> type[P]:
        """The class registered as ``name``, imported now; ``error`` if it is unknown or broken."""
        if name in self._registered and name not in self.builtin:
            return self._registered[name]
        target, distribution = self.builtin.get(name), OWN_DISTRIBUTION
        if target is None:
            entry_point = _entry_points(self.group).get(name)
            if entry_point is None:
                raise self.error(self.unknown_message(name))
            target = entry_point.value
            distribution = entry_point.dist.name if entry_point.dist is not None else "PACKAGE"
        cls = self._import(name, target)
        missing = missing_modules(getattr(cls, "requires", ()))
        if missing:
            extra = getattr(cls, "extra", None)
            hint = f" (install it with: pip install '{distribution}[{extra}]')" if extra else ""
            raise self.error(f"{self.noun} {name!r} cannot be loaded: No module named {missing[0]!r}{hint}")
        return cls

    def unknown_message(self, name: str) -> str:
        """What to say about a name nobody registered: a did-you-mean, and the known names if wanted."""
        known = self.names()
        listed = f"; known: {', '.join(known)}" if self.list_known else ""
        return f"unknown {self.type_noun} {name!r}{did_you_mean(name, known)}{listed}"

    def _import(self, name: str, target: str) -> type[P]:
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.error(f"{self.noun} {name!r} cannot be loaded: {exc}") from None
        except Exception as exc:  # a broken plugin must not take mailgate down with a traceback
            log.warning("%s plugin %s (%s) failed to import", self.noun, name, target, exc_info=True)
            raise self.error(f"{self.noun} {name!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
        cls = getattr(module, class_name, None)
        if cls is None:
            raise self.error(f"{self.noun} {name!r}: {target} does not exist")
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise self.error(f"{self.noun} {name!r}: {target} is not a mailgate {self.base.__name__}")
        return cls


def missing_modules(names: Iterable[str]) -> list[str]:
    """The import names among ``names`` that are not installed (found without importing them)."""
    missing = []
    for module in names:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package is missing, or the module is half-imported
            found = False
        if not found:
            missing.append(module)
    return missing


def _entry_points(group: str) -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points  # only when a name is not built in (about 20 ms)

    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=group):
        found.setdefault(entry_point.name, entry_point)
    return found
