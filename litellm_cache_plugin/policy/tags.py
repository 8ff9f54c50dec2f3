"""Tags and invalidation counters. Pure functions, no I/O.

Invalidation is O(1) whatever the number of entries: every entry records, when its request started,
the values of the counters that can invalidate it; ``DELETE`` only increments a counter, and a read
treats an entry as dead when any recorded counter has moved on. Nothing is scanned or deleted on the
request path; dead entries disappear with their backend TTL.

Counters that apply to an entry:

- the model group's counter (``DELETE /v1/cache/{model}``);
- the tenant's counter (the tenant is an implicit tag of every entry);
- per tag: a global counter (an admin's ``DELETE /v1/cache/tags/{tag}``) and a counter scoped to the
  entry's tenant (a tenant invalidating its own tag, which can never touch another tenant's entries).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
MAX_TAGS = 16


class TagError(ValueError):
    """A tag that cannot be accepted; the message says which and why."""


@lru_cache(maxsize=4096)
def _h(text: str) -> str:
    # Memoized: every lookup derives its model group's (and tags') counter names again.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def validate_tag(tag: object) -> str:
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise TagError(
            f"invalid cache tag {tag!r}: use 1-64 characters from A-Z a-z 0-9 _ . : / -, "
            "starting with a letter or digit"
        )
    return tag


def parse_tags(header: str | None, metadata_tags: Any) -> tuple[str, ...]:
    """Tags of a request from the ``x-cache-tags`` header (comma separated) and ``metadata.cache_tags``
    (a list, or a comma-separated string). Sorted and de-duplicated. Raises :class:`TagError`."""
    found: list[str] = []
    if header:
        found.extend(part.strip() for part in header.split(",") if part.strip())
    if isinstance(metadata_tags, str):
        found.extend(part.strip() for part in metadata_tags.split(",") if part.strip())
    elif isinstance(metadata_tags, Sequence):
        found.extend(metadata_tags)  # validated below, whatever their type
    elif metadata_tags is not None:
        raise TagError("metadata.cache_tags must be a list of strings")
    tags = sorted({validate_tag(tag) for tag in found})
    if len(tags) > MAX_TAGS:
        raise TagError(f"too many cache tags ({len(tags)}); at most {MAX_TAGS}")
    return tuple(tags)


def model_counter(namespace: str, model_group: str) -> str:
    return f"{namespace}:gen:model:{_h(model_group)}"


def tenant_counter(namespace: str, tenant_fingerprint: str) -> str:
    return f"{namespace}:gen:tenant:{tenant_fingerprint}"


def tag_counter(namespace: str, tag: str) -> str:
    return f"{namespace}:gen:tag:{_h(tag)}"


def tenant_tag_counter(namespace: str, tenant_fingerprint: str, tag: str) -> str:
    return f"{namespace}:gen:ttag:{_h(tenant_fingerprint + chr(0) + tag)}"


def counters_for(namespace: str, model_group: str, tenant_fingerprint: str, tags: Iterable[str]) -> list[str]:
    """Every counter that can invalidate an entry of this model group, tenant and tags."""
    keys = [model_counter(namespace, model_group), tenant_counter(namespace, tenant_fingerprint)]
    for tag in tags:
        keys.append(tag_counter(namespace, tag))
        keys.append(tenant_tag_counter(namespace, tenant_fingerprint, tag))
    return keys


def is_invalidated(recorded: Mapping[str, int], current: Mapping[str, int]) -> bool:
    """True when any counter the entry recorded has been incremented since (missing current = 0)."""
    return any(current.get(key, 0) > value for key, value in recorded.items())
