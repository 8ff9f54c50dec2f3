"""What LiteLLM's proxy middleware stack costs a request on the fast path's routes, in-process.

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python -m benchmarks.middleware_stack [--requests 3000]
        [--rounds 5] [--out results/<dir>/middleware-stack.txt]

The proxy app's own middleware stack is built (LiteLLM's ``proxy_server.app``, nothing started), and
its layers down to Starlette's ``ExceptionMiddleware`` (where the fast path sits) are re-linked, as
copies, in front of a trivial ASGI app that answers a fixed 1 KB JSON body: so each request pays the
middlewares and nothing else. Timed, interleaved in every round (medians of the rounds, microseconds
per request):

- ``none``: the trivial app alone;
- ``stack``: every layer, as LiteLLM builds it;
- ``stack, lazy bypass``: the same with ``integrations/lazy_features.py``'s bypass installed, as the
  fast path installs it;
- ``without <layer>``: the stack with that one layer left out (what the layer itself costs).

A hit's request (``POST /v1/chat/completions``, JSON, a bearer key, no ``Accept-Encoding``) and the same
with ``Accept-Encoding: gzip`` (as the OpenAI SDK sends it: LiteLLM's gzip middleware then compresses a
body of 500 bytes or more) are both measured. In-process figures are lower than in a loaded proxy,
where the same work costs about two to three times as much; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from litellm_cache_plugin.integrations.fast_path.wire import ROUTES  # noqa: E402
from litellm_cache_plugin.integrations.lazy_features import bypass_idle_lazy_features  # noqa: E402

BODY = (
    b'{"id":"chatcmpl-1","object":"chat.completion","model":"llama3.2","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"' + b"a" * 900 + b'"},"finish_reason":"stop"}]}'
)


async def trivial(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY, "more_body": False})


def layers() -> tuple[list[Any], Any]:
    """The proxy's middleware layers above ExceptionMiddleware, outermost first, and the app."""
    from litellm.proxy import proxy_server
    from starlette.middleware.exceptions import ExceptionMiddleware

    app = proxy_server.app
    found: list[Any] = []
    node = app.build_middleware_stack()
    while node is not None and not isinstance(node, ExceptionMiddleware):
        found.append(node)
        node = getattr(node, "app", None)
    return found, app


def chain(kept: Sequence[Any], bypass: bool = False) -> Any:
    """Copies of ``kept`` linked in order, in front of the trivial app (optionally with the bypass)."""
    copies = [copy.copy(layer) for layer in kept]
    for outer, inner in itertools.pairwise(copies):
        outer.app = inner
    if not copies:
        return trivial
    copies[-1].app = trivial
    if bypass:
        head = _Top(copies[0])
        if not bypass_idle_lazy_features(head, ROUTES):
            raise SystemExit("the lazy-feature bypass did not install on this LiteLLM")
        return head
    return copies[0]


class _Top:
    """A link above the outermost layer, so that the bypass can replace that one too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def per_request_us(target: Any, app: Any, count: int, gzip: bool) -> float:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-team-a-0001"),
        (b"content-length", b"120"),
        *([(b"accept-encoding", b"gzip, deflate")] if gzip else []),
    ]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        return None

    began = time.perf_counter()
    for _ in range(count):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "http_version": "1.1",
            "scheme": "http",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 4000),
            "state": {},
            "app": app,
        }
        await target(scope, receive, send)
    return (time.perf_counter() - began) / count * 1e6


async def measure(requests: int, rounds: int) -> list[str]:
    found, app = layers()
    cases: dict[str, Any] = {
        "none": trivial,
        "stack": chain(found),
        "stack, lazy bypass": chain(found, bypass=True),
    }
    for index, layer in enumerate(found):
        cases[f"without {type(layer).__name__}"] = chain(found[:index] + found[index + 1 :])
    lines = [f"LiteLLM middleware layers above ExceptionMiddleware: {[type(x).__name__ for x in found]}"]
    for gzip in (False, True):
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for target in cases.values():  # warm-up
            await per_request_us(target, app, max(50, requests // 10), gzip)
        for round_ in range(rounds):
            names = list(cases)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in names:
                samples[name].append(await per_request_us(cases[name], app, requests, gzip))
        label = "Accept-Encoding: gzip" if gzip else "no Accept-Encoding"
        lines += ["", f"{label}: us per request (median of {rounds} rounds of {requests})"]
        for name, values in samples.items():
            lines.append(f"  {name:<50} {statistics.median(values):8.1f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import importlib.metadata
    import platform

    header = [
        f"benchmarks.middleware_stack, LiteLLM {importlib.metadata.version('litellm')}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}"
    ]
    lines = header + asyncio.run(measure(args.requests, args.rounds))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
