"""``litellm-cache``: the command line for humans.

``litellm-cache stats --url http://127.0.0.1:4000 --key sk-admin`` prints what ``GET /v1/cache/stats``
reports (the same numbers as the OpenTelemetry metrics): per layer and model group, the requests by
result, the hit ratio and what the hits saved (latency, tokens, cost, GPU time). ``--json`` prints the
raw document, ``--watch N`` refreshes every N seconds. The key is read from ``LITELLM_MASTER_KEY`` when
``--key`` is not given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

_RESULTS = ("hit", "stale", "coalesced", "miss", "refused", "bypass")
_COLUMNS = (
    ("layer", 10),
    ("model", 22),
    ("hit", 7),
    ("stale", 6),
    ("coal.", 6),
    ("miss", 7),
    ("refus.", 6),
    ("bypass", 7),
    ("hit%", 6),
    ("saved s", 9),
    ("tokens", 10),
    ("USD", 10),
    ("GPU s", 9),
    ("stored", 7),
)


def fetch_stats(url: str, key: str, timeout: float = 10.0) -> dict[str, Any]:
    response = httpx.get(
        f"{url.rstrip('/')}/v1/cache/stats", headers={"Authorization": f"Bearer {key}"}, timeout=timeout
    )
    if response.status_code in (401, 403):
        raise SystemExit(f"litellm-cache: {response.status_code}: the stats need the proxy admin key")
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def render(stats: Mapping[str, Any]) -> str:
    """A fixed-width table of the per-layer, per-model rows (layers without lookups are skipped)."""
    header = " ".join(
        f"{name:>{width}}" if i > 1 else f"{name:<{width}}" for i, (name, width) in enumerate(_COLUMNS)
    )
    lines = [header, "-" * len(header)]
    layers: Mapping[str, Any] = stats.get("layers") or {}
    for layer in sorted(layers):
        if layer in ("fast_path", "admin"):  # a path and admin events, not cache layers
            continue
        for model, row in sorted(layers[layer].items()):
            if not any(row.get(result) for result in _RESULTS) and not row.get("store"):
                continue
            tokens = int(row.get("input_tokens_saved", 0) + row.get("output_tokens_saved", 0))
            cells = [
                layer,
                model,
                *(str(int(row.get(result, 0))) for result in _RESULTS),
                f"{100 * row.get('hit_ratio', 0):.1f}",
                f"{row.get('latency_saved_ms', 0) / 1000:.2f}",
                str(tokens),
                f"{row.get('cost_saved_usd', 0):.4f}",
                f"{row.get('gpu_seconds_saved', 0):.2f}",
                str(int(row.get("store", 0))),
            ]
            lines.append(
                " ".join(
                    f"{cell[:width]:>{width}}" if i > 1 else f"{cell[:width]:<{width}}"
                    for i, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS, strict=True))
                )
            )
    if len(lines) == 2:
        lines.append("(no cache lookups yet)")
    fast = sum(int(row.get("hit", 0)) for row in (layers.get("fast_path") or {}).values())
    if fast:
        lines.append(f"{fast} of the hits were served by the fast path, ahead of LiteLLM's pipeline")
    backend = stats.get("backend")
    if isinstance(backend, Mapping):
        coverage = backend.get("coverage") or {}
        figures = " ".join(
            f"{k}={backend.get(k)}" + (f" ({coverage[k]})" if k in coverage else "")
            for k in ("entries", "bytes", "evictions", "expirations")
        )
        lines.append(f"backend {backend.get('backend')}: {figures}")
        if coverage:
            lines.append(
                "  (cache: this cache's keys only; database: the whole database; server: the whole server)"
            )
    worker = stats.get("worker")
    who = ""
    if isinstance(worker, Mapping) and worker.get("pid") is not None:
        of = f" of {worker['workers']}" if isinstance(worker.get("workers"), int) else ""
        who = f" pid {worker['pid']}{of}"
    lines.append(f"scope: {stats.get('scope', '?')}{who} (each proxy worker counts its own requests)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="litellm-cache", description="litellm_cache_plugin tools")
    commands = parser.add_subparsers(dest="command", required=True)
    stats = commands.add_parser("stats", help="per-layer, per-model cache statistics of a running proxy")
    stats.add_argument("--url", default=os.environ.get("LITELLM_PROXY_URL", "http://127.0.0.1:4000"))
    stats.add_argument("--key", default=os.environ.get("LITELLM_MASTER_KEY"))
    stats.add_argument("--json", action="store_true", help="print the raw JSON document")
    stats.add_argument("--watch", type=float, default=0, metavar="SECONDS", help="refresh periodically")
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("--key (or LITELLM_MASTER_KEY) is required: the stats are for the proxy admin")
    while True:
        try:
            document = fetch_stats(args.url, args.key)
        except httpx.HTTPError as error:
            print(f"litellm-cache: cannot read {args.url}/v1/cache/stats: {error}", file=sys.stderr)
            return 1
        print(json.dumps(document, indent=2) if args.json else render(document), flush=True)
        if args.watch <= 0:
            return 0
        time.sleep(args.watch)
        print()


if __name__ == "__main__":
    raise SystemExit(main())
