"""A griffe extension that turns the docstrings' Sphinx roles into mkdocstrings cross-references.

The library's docstrings are written for readers of the source and for ``help()``, in the roles they
know (``:class:`~img2vid.Genotype```, ``:meth:`to_json```); mkdocstrings shows those raw. This
extension rewrites each docstring once, when griffe has loaded the package, before mkdocstrings
renders it:

- the role's target is resolved as Python would from the docstring's own scope (its members, its
  parents, its module's imports), or taken as written when it is a full dotted path;
- ``~`` shows the last part of the name only, as in Sphinx;
- a public target becomes an optional autorefs cross-reference: a link when the target is rendered
  somewhere on the site, plain code otherwise. Private names and names outside the package (``torch``)
  render as plain code.

A name that is both a module and the function the package re-exports under it (``img2vid.wrap``,
``img2vid.temporalize``) resolves to the function when the role is ``:func:``/``:class:``/``:meth:``.

Registered in ``mkdocs.yml`` under the python handler's ``extensions:`` option.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?P<role>class|meth|func|attr|data|mod|obj|exc|const):`(?P<target>[^`]+)`")
NOT_MODULES = {"class", "meth", "func", "attr", "data", "obj", "exc", "const"}


def _lookup(collection: griffe.ModulesCollection, path: str) -> griffe.Object | griffe.Alias | None:
    try:
        return collection[path]
    except (KeyError, ValueError, griffe.GriffeError):
        return None


def _canonical(found: griffe.Object | griffe.Alias, role: str) -> str | None:
    try:
        if found.is_module and role in NOT_MODULES and found.name in found.members:
            found = found.members[found.name]  # img2vid.wrap: the function, not its module
        return found.canonical_path
    except griffe.GriffeError:  # an alias whose target is outside the loaded package
        return None


def resolve(obj: griffe.Object, target: str, role: str) -> str | None:
    """The canonical path ``target`` names from ``obj``'s scope, or None (outside the package)."""
    collection = obj.modules_collection
    if (found := _lookup(collection, target)) is not None:
        return _canonical(found, role)
    first, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            path = scope.resolve(first)
        except griffe.NameResolutionError:
            scope = scope.parent
            continue
        found = _lookup(collection, f"{path}.{rest}" if rest else path)
        return _canonical(found, role) if found is not None else None
    return None


def cross_reference(obj: griffe.Object, match: re.Match[str]) -> str:
    """The Markdown (inline HTML) for one role: an optional autoref, or plain code."""
    target = match["target"].strip()
    short = target.startswith("~")
    target = target.lstrip("~.")
    shown = html.escape(target.rsplit(".", 1)[-1] if short else target)
    path = resolve(obj, target, match["role"])
    if path is None or any(part.startswith("_") for part in path.split(".")):
        return f"<code>{shown}</code>"
    return f'<autoref identifier="{html.escape(path)}" optional><code>{shown}</code></autoref>'


def rewrite(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = ROLE.sub(lambda match: cross_reference(obj, match), obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            rewrite(member)


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        rewrite(pkg)
