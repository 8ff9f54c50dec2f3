"""Edge layer glue without a proxy: the 304 wrapper (ASGI) and the hook headers of a miss."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson

from litellm_cache_plugin.engine import EngineStats
from litellm_cache_plugin.integrations.edge import ConditionalResponses, hook_edge_headers
from litellm_cache_plugin.policy.edge import EdgeFacts, answer_etag
from litellm_cache_plugin.settings import settings_from_mapping

ETAG = '"0123456789abcdef0123456789abcdef"'
BODY = b'{"choices": []}'


class _Engine:
    def __init__(self) -> None:
        self.stats = EngineStats(Counter(), {})


class _Plugin:
    def __init__(self, section: dict[str, Any]) -> None:
        self.settings = settings_from_mapping(section, environ={})
        self.engine = _Engine()
        self.proxy_mode = True


def _app(status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for index, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})

    return app


def _run(app: Any, request_headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": request_headers}
    asyncio.run(app(scope, receive, send))
    return sent


HIT_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
    (b"etag", ETAG.encode()),
    (b"cache-control", b"public, max-age=0, s-maxage=60"),
    (b"x-cache", b"HIT"),
    (b"x-litellm-model-group", b"g"),
]


def test_matching_etag_becomes_a_bodiless_304() -> None:
    plugin = _Plugin({"layers": {"edge": {"enabled": True}}})
    wrapped = ConditionalResponses(_app(200, HIT_HEADERS, [BODY[:5], BODY[5:]]), plugin)  # type: ignore[arg-type]
    sent = _run(wrapped, [(b"if-none-match", ETAG.encode())])
    assert sent[0]["status"] == 304
    headers = dict(sent[0]["headers"])
    assert headers[b"etag"] == ETAG.encode() and b"content-length" not in headers
    assert [m["body"] for m in sent[1:]] == [b""]
    assert plugin.engine.stats.get("edge", "g", "not_modified") == 1


def test_other_responses_pass_unchanged() -> None:
    plugin = _Plugin({"layers": {"edge": {"enabled": True}}})
    app = _app(200, HIT_HEADERS, [BODY])
    for request_headers in ([], [(b"if-none-match", b'"other"')]):
        sent = _run(ConditionalResponses(app, plugin), request_headers)  # type: ignore[arg-type]
        assert sent[0]["status"] == 200 and sent[1]["body"] == BODY
    no_etag = _app(200, [(b"content-type", b"text/event-stream")], [b"data: x\n\n"])
    sent = _run(ConditionalResponses(no_etag, plugin), [(b"if-none-match", b"*")])  # type: ignore[arg-type]
    assert sent[0]["status"] == 200
    error = _app(401, HIT_HEADERS, [b"{}"])
    sent = _run(ConditionalResponses(error, plugin), [(b"if-none-match", ETAG.encode())])  # type: ignore[arg-type]
    assert sent[0]["status"] == 401


class _Decision:
    def __init__(self, outcome: str, edge: EdgeFacts | None) -> None:
        self.outcome = outcome
        self.edge = edge


class _ModelResponse:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def model_dump_json(self) -> str:
        return orjson.dumps(self.body).decode()


def _answer(finish_reason: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": "Lima."}
    return {
        "id": "chatcmpl-9",
        "model": "g",
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
    }


def test_miss_gets_the_etag_its_stored_entry_will_have() -> None:
    plugin = _Plugin({"scope": "global", "layers": {"edge": {"enabled": True}}})
    decision = _Decision("MISS", EdgeFacts("global", True, 600.0))
    data = {"model": "g", "metadata": {"model_group": "g"}}
    headers = hook_edge_headers(plugin.settings, data, decision, _ModelResponse(_answer("stop")))  # type: ignore[arg-type]
    stored = {k: v for k, v in _answer("stop").items() if k != "model"}
    assert headers["ETag"] == answer_etag(stored)
    assert headers["Cache-Control"] == "public, max-age=0, s-maxage=60"
    # a cut-off answer is not stored, so it has no validator and no shared freshness
    cut = hook_edge_headers(plugin.settings, data, decision, _ModelResponse(_answer("length")))  # type: ignore[arg-type]
    assert cut == {"Cache-Control": "private, no-store"}


def test_no_edge_layer_anywhere_adds_nothing() -> None:
    plugin = _Plugin({"scope": "global"})
    decision = _Decision("HIT", EdgeFacts("global", True, 600.0, ETAG))
    assert hook_edge_headers(plugin.settings, {"model": "g"}, decision, None) == {}  # type: ignore[arg-type]
    assert hook_edge_headers(plugin.settings, {"model": "g"}, None, None) == {}  # type: ignore[arg-type]
