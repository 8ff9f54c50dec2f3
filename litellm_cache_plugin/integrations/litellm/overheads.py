"""Work LiteLLM does on every call only because a ``litellm.cache`` is set, removed where it is inert.

Installing the carrier as ``litellm.cache`` is what makes LiteLLM consult the plugin, and it costs
every miss LiteLLM's caching handler. Two parts of that cost do nothing for the plugin; on the
releases whose source was read (``compat.VERIFIED_RELEASES``) they are removed, on any other release
left as they are:

- ``Cache.__init__`` registers the string "cache" in ``litellm.input_callback``, ``success_callback``
  and ``_async_success_callback``. Nothing reads those markers (caching is the handler's job), but on
  1.106 any string in ``success_callback`` makes LiteLLM also run every async call's *sync* success
  handler in a thread: the standard logging payload built a second time, and the request's thread
  losing the GIL to it. (1.108 already lists "cache" as internal and skips it.)
- The caching handler maps positional arguments to names with ``convert_args_to_kwargs``, which calls
  ``inspect.signature`` on ``litellm.acompletion`` (45 parameters, ~65 µs) twice per call. A
  function's parameter names do not change, so they are looked up once per function.

Measured with ``benchmarks/hit_path.py`` (miss rows, side by side with the previous revision).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import litellm

from litellm_cache_plugin.integrations import compat

log = logging.getLogger("litellm_cache_plugin")

CACHE_MARKER = "cache"
_HANDLER_MODULE = "litellm.caching.caching_handler"
# LiteLLM's own function, once replaced (tests compare the two).
replaced: dict[str, Callable[..., Any]] = {}


def drop_inert_cache_markers(version: str | None) -> bool:
    """Remove the markers ``Cache.__init__`` added, on a release where they are inert. A sync callback
    of the user's own (a string integration, a function) still gets the sync handler: LiteLLM decides
    that from the lists, which keep everything else."""
    if not compat.is_verified(version):
        return False
    for callbacks in (litellm.input_callback, litellm.success_callback, litellm._async_success_callback):
        while CACHE_MARKER in callbacks:
            callbacks.remove(CACHE_MARKER)
    return True


@functools.lru_cache(maxsize=128)
def parameter_names(function: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def positional_to_keywords(
    original_function: Callable[..., Any], args: tuple[object, ...] | None = None
) -> dict[str, object]:
    """What LiteLLM's ``convert_args_to_kwargs`` returns (each positional argument under its
    parameter's name, extra ones dropped), with the names looked up once per function."""
    if not args:
        return {}
    try:
        names = parameter_names(original_function)
    except TypeError:  # unhashable callable: no memo, same answer
        names = tuple(inspect.signature(original_function).parameters)
    return dict(zip(names, args, strict=False))


def _takes_function_and_args(target: object) -> bool:
    try:
        return list(inspect.signature(target).parameters) == ["original_function", "args"]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def memoize_argument_names(version: str | None, module: ModuleType | None = None) -> bool:
    """Replace the caching handler's ``convert_args_to_kwargs`` by :func:`positional_to_keywords`, on
    a release read and only if the function is there with the parameters read."""
    if not compat.is_verified(version):
        return False
    if module is None:
        try:
            module = importlib.import_module(_HANDLER_MODULE)
        except ImportError:
            return False
    current = getattr(module, "convert_args_to_kwargs", None)
    if current is positional_to_keywords:
        return True
    if current is None or not _takes_function_and_args(current):
        log.info("litellm_cache_plugin: LiteLLM's convert_args_to_kwargs is not the one read; left as is")
        return False
    replaced["convert_args_to_kwargs"] = current
    module.convert_args_to_kwargs = positional_to_keywords  # type: ignore[attr-defined]
    return True
