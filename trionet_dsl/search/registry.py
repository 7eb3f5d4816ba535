"""Strategies by name: the built-ins plus any registered under the ``trionet_dsl.strategies``
entry-point group (a factory ``(space, cost, limits, seed=..., **options) -> SearchStrategy``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from importlib.metadata import entry_points

from trionet_dsl.lang.errors import SpaceError, did_you_mean
from trionet_dsl.search.base import SearchStrategy
from trionet_dsl.search.evolution import Evolution
from trionet_dsl.search.optuna_search import OptunaSearch
from trionet_dsl.search.random_search import RandomSearch

BUILTIN: dict[str, Callable[..., SearchStrategy]] = {
    "random": RandomSearch,
    "evolution": Evolution,
    "tpe": partial(OptunaSearch, sampler="tpe"),
    "nsga2": partial(OptunaSearch, sampler="nsga2"),
}


def available() -> dict[str, Callable[..., SearchStrategy]]:
    found = dict(BUILTIN)
    for ep in entry_points(group="trionet_dsl.strategies"):
        found.setdefault(ep.name, ep.load)  # loaded lazily below
    return found


def make_strategy(name: str, *args: object, **kwargs: object) -> SearchStrategy:
    """Instantiate a strategy by name (built-in or entry point)."""
    if name in BUILTIN:
        return BUILTIN[name](*args, **kwargs)
    for ep in entry_points(group="trionet_dsl.strategies"):
        if ep.name == name:
            return ep.load()(*args, **kwargs)
    raise SpaceError(f"unknown search strategy '{name}'", hint=did_you_mean(name, list(available())))
