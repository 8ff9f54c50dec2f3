"""Fast hit path: serve cache hits ahead of LiteLLM's request pipeline (proxy only).

Where it sits
    :func:`install_fast_path` puts one ASGI callable into the proxy's already-built middleware stack,
    just inside Starlette's ``ExceptionMiddleware``. Every LiteLLM middleware (admission control,
    request-size limit, CORS, security headers, gzip, in-flight tracking, budget-reservation release)
    still runs around it, and a refusal raised by LiteLLM's auth here is rendered by the app's own
    exception handlers, exactly as when the route's auth dependency raises it. If no
    ``ExceptionMiddleware`` can be found the callable wraps the whole stack instead and then lets the
    normal pipeline answer every refusal.

What it serves
    ``POST /v1/chat/completions``, ``/chat/completions``, ``/v1/completions``, ``/completions`` (exact
    layer, streamed or not: a stream is replayed as SSE chunks like LiteLLM's own cache-hit replay) and
    ``/v1/embeddings``, ``/embeddings`` (only when every input item is cached). Anything it cannot
    decide - no entry, a stale entry, an ineligible request, an unknown or aliased model, deployments of
    one group that disagree on provider, version or output parameters, a guardrail or a third-party
    hook that could change or refuse the request, a malformed body, any exception - goes down the
    normal pipeline unchanged, with the consumed request body replayed.

The decision, cheapest first
    1. Route, method and size from the ASGI scope; the body parsed once with orjson and shape-checked:
       only the output parameters (all part of the key) and a few fields LiteLLM merely reads
       (``stream``, ``stream_options``, ``metadata``, ``user``, ``cache``) may be present, with the types
       LiteLLM accepts; any other field (routing, fallbacks, mock responses, timeouts, tags...) is left
       to the pipeline.
    2. A per-process hint maps the caller's credentials (a hash of the auth headers) to the tenant of
       its last successful authentication here. With a hint, a raw existence probe of the store
       decides most misses without running auth at all; the hint only chooses what to probe, it never
       decides what is served.
    3. LiteLLM's own ``user_api_key_auth`` (same function, same key cache, same custom_auth,
       ``custom_auth_run_common_checks`` / ``enable_post_custom_auth_checks`` behaviour, budgets and
       budget reservation); a refusal is raised as-is. Then LiteLLM's key model-access check
       (``can_key_call_model``): a key that may not use the model is never served here (the normal
       pipeline decides what it gets), and team model lists likewise.
    4. The route's own request setup (``add_litellm_data_to_request``) and LiteLLM's built-in pre-call
       hooks plus the plugin's (identity stamping, ``Cache-Control``, ``force_zero``), then the SDK-level
       kwargs the carrier would see (deployment provider, model, ``api_base`` and ``model_info`` from the
       router), the plugin's deployment hook (it keeps Ollama digests current), the plugin's context and
       key, and an exact lookup without coordination. Only a fresh ``HIT`` is served: a miss or a stale
       entry goes to the hook path, which owns single-flight fetches and stale-while-revalidate refreshes
       (so no claim of this path is ever left waiting for a fetch that would not come).

Accounting
    A hit is logged as a cache hit with zero cost through LiteLLM's success callbacks, in a background
    task on LiteLLM's logging worker: ``async_log_success_event`` of every registered CustomLogger sees
    ``kwargs["cache_hit"] is True`` and ``response_cost == 0``. It is logged as a non-streamed call
    (``kwargs["stream"]`` is False) whatever the client asked for.

Rate limits (setting ``fast_path.apply_rate_limits``, default ``false``)
    With the default, hits served here do not consume LiteLLM RPM/TPM/parallel-request limits: the
    rate limiter's pre-call hook is not run for them and its success callback does not see them. With
    ``true`` the limiter's pre-call hook runs for every hit (after the lookup, so misses are not
    counted twice); a hit it refuses goes down the normal pipeline, which answers the same 429.

Known differences from the normal pipeline
    Post-call hooks (``async_post_call_success_hook``, streaming hooks) of LiteLLM's built-in callbacks
    do not run on a fast-path hit; with a third-party callback defining any of them the fast path
    stands aside. Response headers are the cache headers plus ``x-litellm-call-id`` and
    ``x-litellm-model-group``, not the proxy's full ``x-litellm-*`` set. A pre-call hook that raises
    sends the request down the normal pipeline, where the hooks run again (a hook with a side effect
    that ran before the raising one runs twice).
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from litellm_cache_plugin.integrations.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    install_in_proxy_app,
)
from litellm_cache_plugin.integrations.edge import hit_edge_headers
from litellm_cache_plugin.payloads import (
    answer_encoding,
    canonical_response,
    encode_vector,
    requested_encoding,
)
from litellm_cache_plugin.policy.controls import (
    parse_cache_control,
    parse_litellm_cache_field,
    response_headers,
)
from litellm_cache_plugin.policy.keys import OUTPUT_PARAMS, RequestKind

if TYPE_CHECKING:
    from litellm_cache_plugin.engine import Lookup, Prefetched
    from litellm_cache_plugin.envelope import Entry
    from litellm_cache_plugin.integrations.litellm import CachePlugin, RequestContext

log = logging.getLogger("litellm_cache_plugin")


ROUTES: Final[Mapping[str, RequestKind]] = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/completions": "text",
    "/completions": "text",
    "/v1/embeddings": "embedding",
    "/embeddings": "embedding",
}
CALL_TYPES: Final[Mapping[RequestKind, str]] = {
    "chat": "acompletion",
    "text": "atext_completion",
    "embedding": "aembedding",
}
# Headers any of LiteLLM's auth paths reads a credential from (plus the configurable custom header).
CREDENTIAL_HEADERS: Final = (
    "authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-litellm-api-key",
)
HINT_TTL_S: Final = 300.0
HINT_CAPACITY: Final = 10_000
SSE_DONE: Final = b"data: [DONE]\n\n"
_REPLAY_SLICE = re.compile(r"\s*\S+\s*", re.UNICODE)
_INSTALLED_ATTR = "_lcp_fast_path_installed"


# --- pure parts: request pre-checks, hit rendering (tested without LiteLLM) -------------------------


def route_kind(scope: Mapping[str, Any]) -> RequestKind | None:
    """The cacheable route a request is for, or None. ``root_path`` is stripped like LiteLLM does."""
    if scope.get("type") != "http" or scope.get("method") != "POST":
        return None
    path = str(scope.get("path") or "")
    root = str(scope.get("app_root_path", scope.get("root_path")) or "").rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return ROUTES.get(path)


def header_map(scope: Mapping[str, Any]) -> dict[str, str]:
    """Lower-cased request headers; the first occurrence wins, as with Starlette's ``Headers.get``."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        if name not in headers:
            headers[name] = raw_value.decode("latin-1")
    return headers


def declared_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def is_json_content(headers: Mapping[str, str]) -> bool:
    """JSON or unspecified: LiteLLM parses both as JSON; forms and binary bodies are not for us."""
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return content_type in ("", "application/json") or content_type.endswith("+json")


def credential_fingerprint(headers: Mapping[str, str], extra_header: str | None = None) -> str | None:
    """Hash of every header a credential may come from; None when there is none."""
    names = (*CREDENTIAL_HEADERS, extra_header.lower()) if extra_header else CREDENTIAL_HEADERS
    parts = [f"{name}\x00{headers[name]}" for name in names if name in headers]
    if not parts:
        return None
    return hashlib.sha256("\x01".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


# Body fields a request served here may carry besides the output parameters (which are all part of the
# key: an entry exists only if LiteLLM accepted them before). Anything else - routing, fallbacks, mock
# responses, guardrails, timeouts, tags - changes or may refuse what LiteLLM does, so it is its call.
_REQUEST_FIELDS: Final = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "input",
        "stream",
        "stream_options",
        "metadata",
        "user",
        "cache",
        "cache_key",
    }
)
# Fields outside the key that LiteLLM validates: another type gets LiteLLM's own error, not a hit.
_FIELD_TYPES: Final[Mapping[str, type | tuple[type, ...]]] = {
    "stream_options": dict,
    "metadata": dict,
    "user": str,
    "cache": dict,
    "cache_key": str,
}


def check_body(data: Any, kind: RequestKind) -> str | None:
    """Why a parsed body cannot be served here (None: it may be). Cheap, before any auth."""
    if not isinstance(data, dict):
        return "not_an_object"
    for name, value in data.items():
        if name not in _REQUEST_FIELDS and name not in OUTPUT_PARAMS:
            return "field"
        expected = _FIELD_TYPES.get(name)
        if expected is not None and value is not None and not isinstance(value, expected):
            return "field_type"
    model = data.get("model")
    if not isinstance(model, str) or not model:
        return "model"
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return "stream"
    if kind == "chat":
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return "messages"
    elif kind == "text":
        prompt = data.get("prompt")
        if not (isinstance(prompt, str) or (_non_empty_list_of(prompt, str))):
            return "prompt"
    else:
        if stream:
            return "stream"
        if embedding_inputs(data.get("input")) is None:
            return "input"
        if requested_encoding(data.get("encoding_format")) is None:
            return "encoding_format"  # neither float nor base64: LiteLLM's (or the provider's) to answer
    if parse_litellm_cache_field(data.get("cache")).no_cache:
        return "no_cache"
    return None


def _non_empty_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, kind) for item in value)


def embedding_inputs(value: Any) -> list[str] | None:
    """The items of an embeddings ``input`` we can serve: a string or a non-empty list of strings."""
    if isinstance(value, str):
        return [value]
    if _non_empty_list_of(value, str):
        return list(value)
    return None


def header_bypasses(headers: Mapping[str, str]) -> bool:
    """``Cache-Control: no-cache``/``no-store`` on the request: the cache must not answer."""
    return parse_cache_control(headers.get("cache-control")).no_cache


def include_stream_usage(data: Mapping[str, Any], always_include: object) -> bool:
    """Whether the client's stream ends with a usage chunk, decided like the proxy does
    (``stream_options.include_usage`` or ``general_settings.always_include_stream_usage``)."""
    options = data.get("stream_options")
    if always_include is True and (not isinstance(options, dict) or "include_usage" not in options):
        return True
    return isinstance(options, dict) and options.get("include_usage") is True


def client_payload(payload: Mapping[str, Any], requested_model: str | None) -> dict[str, Any]:
    """A stored response as the proxy shows it: ``model`` is the model the client asked for (unless
    the request wants the raw name: ``requested_model`` None) and unset (null) fields are left out."""
    body = {k: v for k, v in payload.items() if v is not None}
    if requested_model and "model" in body:
        body["model"] = requested_model
    choices = body.get("choices")
    if isinstance(choices, list):
        body["choices"] = [
            _clean_choice(choice) if isinstance(choice, dict) else choice for choice in choices
        ]
    usage = body.get("usage")
    if isinstance(usage, dict):
        body["usage"] = {k: v for k, v in usage.items() if v is not None}
    return body


def _clean_choice(choice: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = {k: v for k, v in choice.items() if v is not None}
    message = cleaned.get("message")
    if isinstance(message, dict):
        # ``content: null`` stays: next to tool calls it is part of the OpenAI shape.
        cleaned["message"] = {k: v for k, v in message.items() if v is not None or k == "content"}
    return cleaned


def split_for_replay(text: str | None) -> list[str]:
    """Lossless word-shaped slices, the cadence LiteLLM uses when it replays a cached answer."""
    if not text or text.isspace():
        return [text] if text else []
    return _REPLAY_SLICE.findall(text)


def sse(event: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def chat_stream_events(payload: Mapping[str, Any], *, include_usage: bool, created: int) -> list[bytes]:
    """A stored chat completion as the SSE chunks a streamed LiteLLM cache hit sends."""
    base: dict[str, Any] = {
        "id": payload.get("id") or f"chatcmpl-{uuid.uuid4()}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": payload.get("model"),
    }
    if payload.get("system_fingerprint") is not None:
        base["system_fingerprint"] = payload["system_fingerprint"]
    choices = payload.get("choices") or []
    events: list[bytes] = []
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        content = message.get("content")
        # Several choices keep their text whole (LiteLLM replays n>1 answers unsplit as well).
        pieces: list[str | None] = list(split_for_replay(content) if len(choices) == 1 else [content])
        if not pieces:
            pieces = [None]
        for number, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece}
            if number == 0:
                delta = {"role": message.get("role") or "assistant", "content": piece}
                tool_calls = message.get("tool_calls")
                if isinstance(tool_calls, list) and tool_calls:
                    delta["tool_calls"] = [
                        {"index": call.get("index", i), **call} if isinstance(call, dict) else call
                        for i, call in enumerate(tool_calls)
                    ]
                if message.get("function_call") is not None:
                    delta["function_call"] = message["function_call"]
            events.append(sse({**base, "choices": [{"index": index, "delta": delta}]}))
        finish = choice.get("finish_reason") or "stop"
        events.append(sse({**base, "choices": [{"index": index, "delta": {}, "finish_reason": finish}]}))
    usage = payload.get("usage")
    if include_usage and isinstance(usage, dict):
        events.append(sse({**base, "choices": [{"index": 0, "delta": {}}], "usage": usage}))
    events.append(SSE_DONE)
    return events


def text_stream_events(payload: Mapping[str, Any], *, include_usage: bool, created: int) -> list[bytes]:
    """A stored text completion as the SSE chunks a streamed ``/v1/completions`` call sends."""
    base: dict[str, Any] = {
        "id": payload.get("id") or f"cmpl-{uuid.uuid4()}",
        "object": "text_completion",
        "created": created,
        "model": payload.get("model"),
    }
    choices = payload.get("choices") or []
    events: list[bytes] = []
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        text = choice.get("text")
        pieces = split_for_replay(text) if len(choices) == 1 else ([text] if text else [])
        for piece in pieces:
            events.append(sse({**base, "choices": [{"index": index, "text": piece}]}))
        finish = choice.get("finish_reason") or "stop"
        events.append(sse({**base, "choices": [{"finish_reason": finish, "index": index}]}))
    usage = payload.get("usage")
    if include_usage and isinstance(usage, dict):
        events.append(sse({**base, "choices": [{"index": 0}], "usage": usage}))
    events.append(SSE_DONE)
    return events


def embedding_body(
    items: Sequence[Mapping[str, Any]],
    inputs: Sequence[str],
    fallback_model: str,
    count_tokens: Callable[[str], int],
) -> dict[str, Any] | None:
    """The response LiteLLM builds when every item of an embeddings request is cached (None: an item
    lacks its vector)."""
    data: list[dict[str, Any]] = []
    prompt_tokens = 0
    for index, item in enumerate(items):
        vector = item.get("embedding")
        if vector is None:
            return None
        data.append({"embedding": vector, "index": index, "object": "embedding"})
        tokens = item.get("prompt_tokens")
        prompt_tokens += int(tokens) if isinstance(tokens, int) else count_tokens(inputs[index])
    model = next((item.get("model") for item in items if item.get("model")), None) or fallback_model
    return {
        "model": model,
        "data": data,
        "object": "list",
        "usage": {
            "completion_tokens": 0,
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens,
            "completion_tokens_details": None,
            "prompt_tokens_details": None,
        },
    }


def hit_headers(
    *,
    layer: str,
    age: int | None,
    stream: bool,
    call_id: str,
    model_group: str,
    content_length: int | None = None,
    items: tuple[int, int] | None = None,
    cache_key: str | None = None,
    edge: Mapping[str, str] | None = None,
) -> list[tuple[bytes, bytes]]:
    """Raw ASGI headers of a hit: the hook path's cache headers (``edge``: the edge layer's), plus what
    a client needs to correlate."""
    headers = {name.lower(): value for name, value in response_headers("HIT", layer, age).items()}
    headers.update((name.lower(), value) for name, value in (edge or {}).items())
    if items is not None:
        headers["x-cache-items"] = f"{items[0]}/{items[1]}"
    if cache_key is not None:
        # LiteLLM reports the (tenant-scoped, so harmless) key of a hit; the hook path does the same.
        headers["x-litellm-cache-key"] = cache_key
    headers["x-litellm-call-id"] = call_id
    headers["x-litellm-model-group"] = model_group
    if stream:
        headers["content-type"] = "text/event-stream; charset=utf-8"
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
    else:
        headers["content-type"] = "application/json"
    if content_length is not None:
        headers["content-length"] = str(content_length)
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def prefixed_receive(messages: Sequence[Message], receive: Receive) -> Receive:
    """A ``receive`` that first replays what was already consumed, then reads on."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def read_body(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """Read the whole body (None when it is over ``limit`` or the client left) and every message
    consumed, so the request can be replayed unchanged."""
    consumed: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        consumed.append(message)
        if message.get("type") != "http.request":
            return None, consumed
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, consumed
        chunks.append(chunk)
        if not message.get("more_body", False):
            body = b"".join(chunks)
            # One message holding everything replays cheaper than many small ones.
            return body, [{"type": "http.request", "body": body, "more_body": False}]


# --- deployment facts of a model group --------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    model: str
    api_base: str | None


@dataclass(frozen=True)
class GroupInfo:
    """What every deployment of a model group agrees on (else the group is not served here)."""

    provider: str
    model_info: Mapping[str, Any]
    params: Mapping[str, Any]  # output-changing litellm_params of the deployments
    deployments: tuple[Deployment, ...]


def group_info(deployments: Iterable[Mapping[str, Any]]) -> GroupInfo | None:
    """The shared facts of a group's deployments, or None when they differ in anything that is part of
    a cache key (provider, configured version, output parameters) or when routing depends on the team.
    A version that is discovered at run time (an Ollama digest) is compared per request."""
    signature: tuple[str, Any, bytes] | None = None
    found: list[Deployment] = []
    model_info: Mapping[str, Any] = {}
    output: dict[str, Any] = {}
    for deployment in deployments:
        params = deployment.get("litellm_params") or {}
        model = params.get("model")
        if not isinstance(model, str) or not model:
            return None
        info = deployment.get("model_info") or {}
        if info.get("team_id") or info.get("team_public_model_name"):
            return None  # team-routed deployments: the router decides per caller
        provider = params.get("custom_llm_provider") or (model.split("/", 1)[0] if "/" in model else None)
        if not isinstance(provider, str) or not provider:
            return None
        these = {k: v for k, v in params.items() if k in OUTPUT_PARAMS and v is not None}
        try:
            this = (provider, info.get("version"), orjson.dumps(these, option=orjson.OPT_SORT_KEYS))
        except TypeError:
            return None
        if signature is None:
            signature, model_info, output = this, dict(info), these
        elif this != signature:
            return None
        api_base = params.get("api_base")
        found.append(Deployment(model=model, api_base=api_base if isinstance(api_base, str) else None))
    if signature is None:
        return None
    return GroupInfo(provider=signature[0], model_info=model_info, params=output, deployments=tuple(found))


# --- the ASGI callable ------------------------------------------------------------------------------


@dataclass
class _Hint:
    api_key: str | None
    team_id: str | None
    user_id: str | None
    org_id: str | None
    at: float

    @property
    def token(self) -> str | None:
        return self.api_key


class _Skip(Exception):
    """Internal: this request goes down the normal pipeline, for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FastPathApp:
    """The ASGI callable installed in the proxy's middleware stack (see module docstring)."""

    def __init__(self, app: ASGIApp, plugin: CachePlugin, *, renders_refusals: bool) -> None:
        self.app = app
        self.plugin = plugin
        self.settings = plugin.settings.fast_path
        # Under ExceptionMiddleware an auth refusal raised here is rendered like the route's own.
        self.renders_refusals = renders_refusals
        self._hints: OrderedDict[str, _Hint] = OrderedDict()
        self._groups: dict[str, tuple[float, int, GroupInfo | None]] = {}
        self._hook_plan_key: tuple[int, ...] | None = None
        self._hook_plan: tuple[list[Any], bool] = ([], False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = route_kind(scope)
        if kind is None:
            await self.app(scope, receive, send)
            return
        headers = header_map(scope)
        length = declared_length(headers)
        if (
            not is_json_content(headers)
            or (length is not None and length > self.settings.max_body_bytes)
            or header_bypasses(headers)
        ):
            await self.app(scope, receive, send)
            return
        body, consumed = await read_body(receive, self.settings.max_body_bytes)
        replay = prefixed_receive(consumed, receive)
        if body is None:
            await self.app(scope, replay, send)
            return
        state = scope.setdefault("state", {})
        state_before = dict(state) if isinstance(state, dict) else None
        attempt = _Attempt(self, scope, headers, body, kind)
        served = False
        try:
            served = await attempt.run(send)
        except _Skip as skip:
            attempt.note(skip.reason)
        except Exception:
            # Auth's own verdict (a refusal, or its failure) is the proxy's answer: it is raised from
            # the same function the route would call, and rendered by the same handlers.
            if attempt.started or (attempt.authenticating and self.renders_refusals):
                raise
            log.debug("fast path fell through on an error", exc_info=True)
            attempt.note("error")
        if served:
            return
        await attempt.release_reservation()
        if state_before is not None and isinstance(state, dict):
            # The normal pipeline authenticates again: leave it the request state it would have seen.
            state.clear()
            state.update(state_before)
        await self.app(scope, replay, send)

    # -- caches ----------------------------------------------------------------------------------------

    def hint_for(self, fingerprint: str | None) -> _Hint | None:
        if fingerprint is None:
            return None
        hint = self._hints.get(fingerprint)
        if hint is None or time.monotonic() - hint.at > HINT_TTL_S:
            return None
        return hint

    def remember(self, fingerprint: str | None, auth: Any) -> None:
        if fingerprint is None:
            return
        self._hints[fingerprint] = _Hint(
            api_key=_str(getattr(auth, "api_key", None)) or _str(getattr(auth, "token", None)),
            team_id=_str(getattr(auth, "team_id", None)),
            user_id=_str(getattr(auth, "user_id", None)),
            org_id=_str(getattr(auth, "org_id", None)),
            at=time.monotonic(),
        )
        self._hints.move_to_end(fingerprint)
        while len(self._hints) > HINT_CAPACITY:
            self._hints.popitem(last=False)

    def group(self, router: Any, model_group: str) -> GroupInfo | None:
        """Deployment facts of a model group, recomputed at most every second or when the list changes."""
        model_list = getattr(router, "model_list", None) or []
        cached = self._groups.get(model_group)
        now = time.monotonic()
        if cached is not None and now - cached[0] < 1.0 and cached[1] == len(model_list):
            return cached[2]
        deployments = [d for d in model_list if isinstance(d, dict) and d.get("model_name") == model_group]
        if not deployments:
            return None  # not remembered: the name comes from the client
        info = group_info(deployments)
        self._groups[model_group] = (now, len(model_list), info)
        return info

    def hook_plan(self) -> tuple[list[Any], bool]:
        """The pre-call hooks to run here, in the proxy's order, and whether the fast path must stand
        aside (a guardrail, or a third-party hook that could refuse, rewrite or post-process)."""
        from litellm.integrations.custom_logger import CustomLogger
        from litellm.proxy.utils import ProxyLogging

        caps = ProxyLogging.callback_capabilities()
        callbacks = list(caps.resolved_callbacks)
        key = (id(caps), *(id(c) for c in callbacks))
        if key == self._hook_plan_key:
            return self._hook_plan
        stand_aside = bool(caps.has_guardrail or caps.has_content_enforcer)
        plan: list[Any] = []
        seen: set[int] = set()
        post_hooks = (
            "async_post_call_success_hook",
            "async_post_call_streaming_hook",
            "async_post_call_streaming_iterator_hook",
            "async_post_call_response_headers_hook",
        )
        for callback in callbacks:
            if not isinstance(callback, CustomLogger) or id(callback) in seen:
                continue
            seen.add(id(callback))
            own = vars(type(callback))
            builtin = type(callback).__module__.startswith("litellm.")
            if callback is self.plugin:
                plan.append(callback)
                continue
            if not builtin and any(name in own for name in post_hooks):
                stand_aside = True
            overrides = (
                "async_pre_call_hook" in own
                and type(callback).async_pre_call_hook is not CustomLogger.async_pre_call_hook
            )
            if not overrides:
                continue
            if not builtin:
                stand_aside = True  # unknown rules: the normal pipeline runs it
            else:
                plan.append(callback)
        self._hook_plan_key, self._hook_plan = key, (plan, stand_aside)
        return self._hook_plan


def is_rate_limiter(callback: object) -> bool:
    module = type(callback).__module__
    return module.startswith("litellm.") and ("rate_limit" in module or "parallel_request_limiter" in module)


class _Attempt:
    """One request's try at the fast path. ``run`` returns True once the response was sent."""

    def __init__(
        self, owner: FastPathApp, scope: Scope, headers: dict[str, str], body: bytes, kind: RequestKind
    ) -> None:
        self.owner = owner
        self.plugin = owner.plugin
        self.scope = scope
        self.headers = headers
        self.body = body
        self.kind = kind
        self.started = False
        self.authenticating = False
        self.model_group = "-"
        self.request: Any = None
        # The probe's read of the entry (with the hinted tenant's counters): the lookup after auth
        # uses it when the authenticated request has the same key, instead of a second round trip.
        self.prefetched: Prefetched | None = None
        self.served: list[Entry] = []  # the entries a hit was built from (counted once it is sent)

    def note(self, reason: str) -> None:
        """Count why a request went down the normal pipeline (``GET /v1/cache/stats``, layer fast_path)."""
        self.plugin.engine.stats.bump("fast_path", self.model_group, f"pass_{reason}")

    async def release_reservation(self) -> None:
        """Auth may have reserved budget for this request; the normal pipeline reserves its own."""
        state = self.scope.get("state")
        reservation = state.get("budget_reservation") if isinstance(state, dict) else None
        if not isinstance(reservation, dict):
            return
        try:
            from litellm.proxy.spend_tracking.budget_reservation import release_unbound_budget_reservation

            await release_unbound_budget_reservation(reservation)
        except Exception:
            log.warning("fast path could not release a budget reservation", exc_info=True)

    async def run(self, send: Send) -> bool:
        started = time.time()
        data = orjson.loads(self.body)
        problem = check_body(data, self.kind)
        if problem is not None:
            raise _Skip(problem)
        from litellm.proxy import proxy_server

        router = proxy_server.llm_router
        model_group: str = data["model"]
        if router is None or _aliased(model_group, router):
            raise _Skip("model_alias")
        info = self.owner.group(router, model_group)
        if info is None:
            raise _Skip("model_group")
        self.model_group = model_group  # a configured group: safe to count under its name
        plan, stand_aside = self.owner.hook_plan()
        if stand_aside:
            raise _Skip("hooks")
        plugin = self.plugin

        fingerprint = credential_fingerprint(
            self.headers, proxy_server.general_settings.get("litellm_key_header_name")
        )
        hint = self.owner.hint_for(fingerprint)
        if hint is not None and not await self._probe(data, hint, info):
            raise _Skip("probe_miss")  # decided without running auth

        self.authenticating = True
        auth = await self._authenticate()
        self.authenticating = False
        self.owner.remember(fingerprint, auth)
        if not await self._may_use(auth, model_group, router, proxy_server):
            raise _Skip("model_access")
        request_data = await self._setup(auth, proxy_server)
        if request_data is None or request_data.get("model") != model_group:
            raise _Skip("request_setup")
        call_id = str(request_data.get("litellm_call_id"))
        if not await self._run_hooks(plan, auth, request_data, limiter=False):
            raise _Skip("pre_call_hook")
        kwargs = sdk_kwargs(request_data, info, model_group)
        await deployment_hooks(plugin, kwargs, info, CALL_TYPES[self.kind])
        if not same_version(plugin, kwargs, info, model_group):
            raise _Skip("model_version")
        ctx = plugin.context(kwargs)
        if ctx is None or not ctx.cacheable or ctx.request.model_group != model_group:
            raise _Skip("not_cacheable")
        if self.kind == "embedding":
            rendered = await self._embedding_hit(ctx, kwargs, model_group, call_id)
        else:
            rendered = await self._response_hit(ctx, request_data, model_group, call_id, proxy_server)
        if rendered is None:
            raise _Skip("miss")
        if self.owner.settings.apply_rate_limits:
            limiters = _limiters()
            if limiters and not await self._run_hooks(limiters, auth, request_data, limiter=True):
                raise _Skip("rate_limit")
        headers, chunks, response = rendered
        self.started = True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": False})
        plugin.engine.stats.bump("fast_path", model_group, "hit")
        plugin.account_served(ctx, self.served, started)
        _log_hit(
            kind=self.kind,
            kwargs={**kwargs, "litellm_call_id": call_id},
            response=response,
            start=started,
            end=time.time(),
            apply_rate_limits=self.owner.settings.apply_rate_limits,
        )
        return True

    # -- steps -----------------------------------------------------------------------------------------

    async def _probe(self, data: dict[str, Any], hint: _Hint, info: GroupInfo) -> bool:
        """Is there possibly an entry? Keys computed with the remembered tenant, one raw store read."""
        plugin = self.plugin
        provisional: dict[str, Any] = orjson.loads(self.body)
        provisional["metadata"] = {}
        provisional["proxy_server_request"] = {"headers": self.headers}
        await plugin.async_pre_call_hook(hint, None, provisional, CALL_TYPES[self.kind])
        kwargs = sdk_kwargs(provisional, info, str(data["model"]))
        ctx = plugin.context(kwargs)
        if ctx is None or not ctx.cacheable:
            return False
        store = plugin.engine.store
        if self.kind == "embedding":
            items = embedding_inputs(kwargs.get("input")) or []
            found = await store.get_many([plugin.key_for(ctx, item) for item in items])
            return all(raw is not None for raw in found)
        self.prefetched = await plugin.engine.read(
            plugin.key_for(ctx), tenant=ctx.tenant, model_group=ctx.request.model_group, tags=ctx.tags
        )
        if self.prefetched.raw is None:
            plugin.remember_miss(self.prefetched)  # the hook path's lookup then needs no round trip
            return False
        return True

    async def _authenticate(self) -> Any:
        """LiteLLM's own auth on a Request over this scope (the body replayed to it)."""
        from litellm.proxy.auth import user_api_key_auth as auth_module
        from starlette.requests import Request

        body = self.body
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        # A copy of the scope: auth caches its parse there; the request state dict stays shared so the
        # proxy's budget-reservation release middleware sees what auth reserved.
        request = Request(dict(self.scope), receive)
        self.request = request
        return await auth_module.user_api_key_auth(
            request=request,
            api_key=await auth_module.api_key_header(request),
            azure_api_key_header=await auth_module.azure_api_key_header(request),
            anthropic_api_key_header=await auth_module.anthropic_api_key_header(request),
            google_ai_studio_api_key_header=await auth_module.google_ai_studio_api_key_header(request),
            azure_apim_header=await auth_module.azure_apim_header(request),
            custom_litellm_key_header=await auth_module.custom_litellm_key_header(request),
        )

    async def _may_use(self, auth: Any, model_group: str, router: Any, proxy_server: Any) -> bool:
        """LiteLLM's key-level model access check; anything it refuses is left to the normal pipeline."""
        from litellm.proxy.auth.auth_checks import can_key_call_model

        aliases = getattr(auth, "aliases", None)
        if isinstance(aliases, dict) and model_group in aliases:
            return False
        if getattr(auth, "router_settings", None):
            return False  # per-key router settings may alias the model
        try:
            await can_key_call_model(
                model=model_group,
                llm_model_list=proxy_server.llm_model_list,
                valid_token=auth,
                llm_router=router,
            )
        except Exception:
            return False
        team_models = getattr(auth, "team_models", None) or []
        if team_models and model_group not in team_models and "all-proxy-models" not in team_models:
            return False
        settings = await proxy_server.proxy_config._get_hierarchical_router_settings(
            user_api_key_dict=auth,
            prisma_client=proxy_server.prisma_client,
            proxy_logging_obj=proxy_server.proxy_logging_obj,
        )
        return settings is None

    async def _setup(self, auth: Any, proxy_server: Any) -> dict[str, Any] | None:
        """The route's own request setup, on a fresh parse of the body."""
        from litellm.proxy.common_request_processing import resolve_litellm_call_id
        from litellm.proxy.litellm_pre_call_utils import add_litellm_data_to_request

        data: dict[str, Any] = orjson.loads(self.body)
        if not isinstance(data.get("metadata"), dict):
            data["metadata"] = {}
        for field, attr in (
            ("user_api_key_user_id", "user_id"),
            ("user_api_key_team_id", "team_id"),
            ("user_api_key_org_id", "org_id"),
        ):
            value = getattr(auth, attr, None)
            if value is not None:
                data["metadata"][field] = value
        data = await add_litellm_data_to_request(
            data=data,
            request=self.request,
            general_settings=proxy_server.general_settings,
            user_api_key_dict=auth,
            version=proxy_server.version,
            proxy_config=proxy_server.proxy_config,
        )
        data["litellm_call_id"] = resolve_litellm_call_id(self.headers.get("x-litellm-call-id"))
        return data

    async def _run_hooks(
        self, plan: Sequence[Any], auth: Any, data: dict[str, Any], *, limiter: bool
    ) -> bool:
        """Run pre-call hooks like ``ProxyLogging.pre_call_hook`` does. False: not servable here (the
        normal pipeline runs them again and answers what they decide)."""
        from litellm.proxy import proxy_server
        from litellm.proxy.hooks.parallel_request_limiter_v3 import PROXY_MaxParallelRequestsHandler_v3
        from litellm.types.passthrough_endpoints.pass_through_endpoints import EndpointType

        cache = proxy_server.proxy_logging_obj.call_details["user_api_key_cache"]
        call_type = CALL_TYPES[self.kind]
        for callback in plan:
            if is_rate_limiter(callback) != limiter:
                continue
            before = _request_shape(data)
            if isinstance(callback, PROXY_MaxParallelRequestsHandler_v3):
                response = await callback.async_pre_call_hook(
                    user_api_key_dict=auth,
                    cache=cache,
                    data=data,
                    call_type=call_type,
                    endpoint_type=EndpointType.GENERIC,
                )
            else:
                response = await callback.async_pre_call_hook(
                    user_api_key_dict=auth, cache=cache, data=data, call_type=call_type
                )
            if isinstance(response, dict):
                data = response if response is data else _replace(data, response)
            elif response is not None:
                return False  # a rejection message or exception object: the proxy's own words
            if callback is not self.plugin and _request_shape(data) != before:
                return False  # a hook rerouted or rewrote the request
        return True

    async def _response_hit(
        self,
        ctx: RequestContext,
        request_data: Mapping[str, Any],
        model_group: str,
        call_id: str,
        proxy_server: Any,
    ) -> tuple[list[tuple[bytes, bytes]], list[bytes], Any] | None:
        key = self.plugin.key_for(ctx)
        lookup = await exact_lookup(self.plugin, ctx, key, self.prefetched)
        if lookup.outcome != "HIT" or lookup.entry is None:
            return None  # a miss or a stale entry: the hook path coordinates fetches and refreshes
        stored = canonical_response(self.kind, orjson.loads(lookup.entry.payload))
        if not isinstance(stored, dict) or not isinstance(stored.get("choices"), list):
            return None
        self.served = [lookup.entry]
        payload = client_payload(stored, requested_model(request_data))
        stream = request_data.get("stream") is True
        if stream:
            usage = include_stream_usage(
                request_data, proxy_server.general_settings.get("always_include_stream_usage")
            )
            render = chat_stream_events if self.kind == "chat" else text_stream_events
            chunks = render(payload, include_usage=usage, created=int(time.time()))
            headers = hit_headers(
                layer="exact",
                age=lookup.age,
                stream=True,
                call_id=call_id,
                model_group=model_group,
                cache_key=key,
                edge=hit_edge_headers(self.plugin, ctx, lookup, stream=True),
            )
            return headers, chunks, stored
        body_obj = {**payload, "cached": True} if self.plugin.settings.body_marker else payload
        body = orjson.dumps(body_obj)
        headers = hit_headers(
            layer="exact",
            age=lookup.age,
            stream=False,
            call_id=call_id,
            model_group=model_group,
            content_length=len(body),
            cache_key=key,
            edge=hit_edge_headers(self.plugin, ctx, lookup, stream=False),
        )
        return headers, [body], stored

    async def _embedding_hit(
        self, ctx: RequestContext, kwargs: Mapping[str, Any], model_group: str, call_id: str
    ) -> tuple[list[tuple[bytes, bytes]], list[bytes], Any] | None:
        plugin = self.plugin
        inputs = embedding_inputs(kwargs.get("input"))
        if inputs is None or ctx.controls.no_cache:
            return None
        keys = [plugin.key_for(ctx, item) for item in inputs]
        entries, _ = await plugin.engine.lookup_many(
            keys,
            tenant=ctx.tenant,
            model_group=model_group,
            model_version=ctx.request.model_version,
            controls=ctx.controls,
            tags=ctx.tags,
            record=False,  # counted when served; a miss is counted by the hook path it falls to
        )
        if any(entry is None for entry in entries):
            return None
        self.served = [entry for entry in entries if entry is not None]
        items = [orjson.loads(entry.payload) for entry in entries if entry is not None]
        requested = requested_encoding(kwargs.get("encoding_format")) or "float"
        encoding = answer_encoding(requested, ctx.request.provider)
        if encoding != "float":
            items = [{**item, "embedding": encode_vector(item.get("embedding"), encoding)} for item in items]
        body_obj = embedding_body(items, inputs, model_group, _count_tokens)
        if body_obj is None:
            return None
        body_obj = client_payload(body_obj, requested_model({**kwargs, "model": model_group}))
        body = orjson.dumps(body_obj)
        ages = [int(max(0.0, time.time() - entry.created_at)) for entry in entries if entry is not None]
        headers = hit_headers(
            layer="embedding",
            age=max(ages) if ages else 0,
            stream=False,
            call_id=call_id,
            model_group=model_group,
            content_length=len(body),
            items=(len(items), len(items)),
            edge=hit_edge_headers(plugin, ctx, None, stream=False),
        )
        return headers, [body], body_obj


def sdk_kwargs(
    data: Mapping[str, Any], info: GroupInfo, model_group: str, deployment: Deployment | None = None
) -> dict[str, Any]:
    """The kwargs the Router hands to the SDK call (and so to the carrier) for this request."""
    target = deployment or info.deployments[0]
    kwargs: dict[str, Any] = {**info.params, **data}
    kwargs.pop("litellm_call_id", None)  # decisions are not recorded for fast-path lookups
    metadata = dict(kwargs.get("metadata") or {})
    metadata["model_group"] = model_group
    metadata["model_info"] = info.model_info
    kwargs["metadata"] = metadata
    kwargs["model"] = target.model
    if target.api_base is not None:
        kwargs["api_base"] = target.api_base
    kwargs["custom_llm_provider"] = info.provider
    kwargs["model_info"] = info.model_info
    return kwargs


async def deployment_hooks(
    plugin: CachePlugin, kwargs: Mapping[str, Any], info: GroupInfo, call_type: str
) -> None:
    """The plugin's SDK-level pre-call hook, as the router runs it for the deployment it picks (it keeps
    run-time model versions such as Ollama digests current); here for every deployment it could pick."""
    for deployment in info.deployments:
        candidate = {**kwargs, "model": deployment.model}
        candidate.pop("api_base", None)
        if deployment.api_base is not None:
            candidate["api_base"] = deployment.api_base
        await plugin.async_pre_call_deployment_hook(candidate, call_type)


async def exact_lookup(
    plugin: CachePlugin, ctx: RequestContext, key: str, prefetched: Prefetched | None = None
) -> Lookup:
    """The exact-layer entry for ``ctx``, without the coordination of ``lookup_response`` (single-flight
    claims, stale refreshes, semantic search): a request this path does not serve goes down the hook
    path, which must find no claim of ours waiting for it. ``prefetched``: the probe's read, reused
    when it is of the same key and counters (same tenant: the key holds it)."""
    peek = getattr(plugin, "peek_response", None)
    if peek is not None:
        return await peek(ctx, prefetched)  # type: ignore[no-any-return]
    return await plugin._exact(ctx, key, prefetched=prefetched)


def same_version(plugin: CachePlugin, kwargs: Mapping[str, Any], info: GroupInfo, model_group: str) -> bool:
    """Every deployment the router could pick has one known model version (the same key)."""
    configured = plugin.settings.for_model(model_group).version
    versions = set()
    for deployment in info.deployments:
        candidate = {**kwargs, "model": deployment.model}
        candidate.pop("api_base", None)
        if deployment.api_base is not None:
            candidate["api_base"] = deployment.api_base
        versions.add(plugin.model_version(candidate, info.provider, configured))
    return len(versions) == 1 and "unknown" not in versions


def requested_model(request_data: Mapping[str, Any]) -> str | None:
    """The model name the proxy puts in responses: what the client asked for, unless the request's
    metadata asks for the raw deployment name (LiteLLM's ``return_raw_model_name``)."""
    from litellm.proxy.common_request_processing import should_return_raw_model_name

    if should_return_raw_model_name(dict(request_data)):
        return None
    model = request_data.get("model")
    return model if isinstance(model, str) else None


def _request_shape(data: Mapping[str, Any]) -> bytes:
    """What the answer depends on, serialized: a hook that edits it in place is seen too."""
    fields = [data.get(name) for name in ("model", "messages", "prompt", "input")]
    return orjson.dumps(fields, default=str)


def _replace(data: dict[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    data.clear()
    data.update(response)
    return data


def _aliased(model_group: str, router: Any) -> bool:
    import litellm

    if model_group in (litellm.model_alias_map or {}):
        return True
    aliases = getattr(router, "model_group_alias", None) or {}
    return model_group in aliases


def _limiters() -> list[Any]:
    from litellm.proxy.utils import ProxyLogging

    return [c for c in ProxyLogging.callback_capabilities().resolved_callbacks if is_rate_limiter(c)]


def _count_tokens(text: str) -> int:
    from litellm.utils import token_counter

    return int(token_counter(text=text, count_response_tokens=True))


def _str(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None


# --- accounting ---------------------------------------------------------------------------------------


def _log_hit(
    *,
    kind: RequestKind,
    kwargs: dict[str, Any],
    response: Any,
    start: float,
    end: float,
    apply_rate_limits: bool,
) -> None:
    """Queue the hit's success logging on LiteLLM's logging worker (off the request path)."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        GLOBAL_LOGGING_WORKER.ensure_initialized_and_enqueue(
            async_coroutine=_log_hit_now(kind, kwargs, response, start, end, apply_rate_limits)
        )
    except Exception:
        log.warning("fast path hit not logged", exc_info=True)


async def _log_hit_now(
    kind: RequestKind,
    kwargs: dict[str, Any],
    response: Any,
    start: float,
    end: float,
    apply_rate_limits: bool,
) -> None:
    try:
        import litellm
        from litellm.litellm_core_utils.rules import Rules
        from litellm.utils import function_setup

        start_dt, end_dt = datetime.fromtimestamp(start), datetime.fromtimestamp(end)
        call_type = CALL_TYPES[kind]
        # No deployment served the hit: without a deployment id the router does not count it as that
        # deployment's traffic (usage-based routing, cooldowns), which it would otherwise distort.
        model_info = {k: v for k, v in (kwargs.get("model_info") or {}).items() if k != "id"}
        metadata = {**(kwargs.get("metadata") or {}), "model_info": model_info}
        logged = {k: v for k, v in kwargs.items() if k != "stream"}
        logged.update(model_info=model_info, metadata=metadata)
        logging_obj, _ = function_setup(call_type, Rules(), start_dt, **logged)
        provider = kwargs.get("custom_llm_provider")
        model = str(kwargs.get("model") or "")
        if isinstance(provider, str) and model.startswith(provider + "/"):
            model = model[len(provider) + 1 :]
        logging_obj.update_environment_variables(
            model=model,
            user=kwargs.get("user"),
            optional_params={},
            litellm_params={
                "logger_fn": None,
                "acompletion": True,
                "api_base": kwargs.get("api_base"),
                "metadata": metadata,
                "model_info": model_info,
                "proxy_server_request": kwargs.get("proxy_server_request"),
                "stream_response": {},
                "custom_llm_provider": provider,
                "preset_cache_key": None,
                "litellm_call_id": kwargs.get("litellm_call_id"),
            },
            input=kwargs.get("input")
            if kind == "embedding"
            else kwargs.get("messages", kwargs.get("prompt")),
            api_key=None,
            original_response=str(response),
            additional_args=None,
            stream=False,
            custom_llm_provider=provider,
        )
        if not apply_rate_limits:
            combine = logging_obj.get_combined_callback_list

            def without_limiters(dynamic_success_callbacks: Any, global_callbacks: Any) -> list[Any]:
                return [
                    c for c in combine(dynamic_success_callbacks, global_callbacks) if not is_rate_limiter(c)
                ]

            # Per call: the hit's logging object only, never LiteLLM's global callback list.
            setattr(logging_obj, "get_combined_callback_list", without_limiters)  # noqa: B010
        _memoize_saved_cost(logging_obj, call_type, kwargs, response)
        # The provider's own name for the model (as upstream answered it): LiteLLM resolves cost-map
        # entries for it quickly, while the prefixed name takes a slow path for Ollama on every call.
        logged_response = {**response, "model": model} if isinstance(response, dict) and model else response
        result = _response_object(kind, logged_response, litellm)
        _install_model_cost_memo()
        logging_hit = _LOGGING_HIT.set(True)
        try:
            await logging_obj.async_success_handler(
                result=result, start_time=start_dt, end_time=end_dt, cache_hit=True
            )
        finally:
            _LOGGING_HIT.reset(logging_hit)
    except Exception:
        log.warning("fast path hit not logged", exc_info=True)


# True while this module logs a hit (and in tasks that logging starts): see _install_model_cost_memo.
_LOGGING_HIT: contextvars.ContextVar[bool] = contextvars.ContextVar("lcp_logging_hit", default=False)
_MODEL_COST_INFO: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_MEMO_MARK = "_lcp_hit_memo"


def _install_model_cost_memo() -> None:
    """Memoize LiteLLM's model cost-map lookup for the standard logging payload of the hits logged here.

    Every payload LiteLLM builds looks the model up (``StandardLoggingPayloadSetup.
    get_model_cost_information``); for an Ollama deployment that builds a set of all ~4,500 cost-map
    names and, for a model not in the map, asks the server (``/api/show``, synchronously): ~0.4 ms, a
    ninth of a fast-path hit's CPU. For one (model, provider, API base, response model) the answer
    does not change between hits. The memo answers only while a hit is being logged here (a context
    variable); every other call goes to LiteLLM's function unchanged. Installed once, idempotent."""
    try:
        from litellm.litellm_core_utils.litellm_logging import StandardLoggingPayloadSetup
    except ImportError:
        return
    current = StandardLoggingPayloadSetup.__dict__.get("get_model_cost_information")
    original = current.__func__ if isinstance(current, staticmethod) else None
    if original is None or getattr(original, _MEMO_MARK, False):
        return
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        return
    if "init_response_obj" not in signature.parameters:
        return  # another LiteLLM: leave it alone

    def get_model_cost_information(*args: Any, **kwargs: Any) -> Any:
        if not _LOGGING_HIT.get():
            return original(*args, **kwargs)
        try:
            arguments = signature.bind(*args, **kwargs).arguments
            key = _cost_info_key(arguments)
            hash(key)
        except TypeError:
            return original(*args, **kwargs)
        if key in _MODEL_COST_INFO:
            _MODEL_COST_INFO.move_to_end(key)
            info = _MODEL_COST_INFO[key]
        else:
            info = original(*args, **kwargs)
            _MODEL_COST_INFO[key] = info
            while len(_MODEL_COST_INFO) > 1024:
                _MODEL_COST_INFO.popitem(last=False)
        # A copy per payload: callbacks may edit the payload they are given.
        if isinstance(info, dict):
            value = info.get("model_map_value")
            return {**info, "model_map_value": dict(value) if isinstance(value, dict) else value}
        return info

    setattr(get_model_cost_information, _MEMO_MARK, True)
    StandardLoggingPayloadSetup.get_model_cost_information = staticmethod(  # type: ignore[method-assign]
        get_model_cost_information
    )


def _cost_info_key(arguments: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything the cost-map lookup depends on: the arguments, and of the response its model names
    (LiteLLM picks the name to look up from them)."""
    response = arguments.get("init_response_obj")
    hidden = getattr(response, "_hidden_params", None)
    hidden = hidden if isinstance(hidden, dict) else {}
    model = response.get("model") if isinstance(response, dict) else getattr(response, "model", None)
    facts = (
        type(response).__name__,
        model,
        hidden.get("provider_response_model"),
        hidden.get("model"),
        hidden.get("region_name"),
    )
    return (*((k, v) for k, v in arguments.items() if k != "init_response_obj"), facts)


_SAVED_COSTS: OrderedDict[tuple[str, ...], float | None] = OrderedDict()


def _memoize_saved_cost(logging_obj: Any, call_type: str, kwargs: Mapping[str, Any], payload: Any) -> None:
    """LiteLLM prices every cache hit as if it had gone upstream (``saved_cache_cost``); for an Ollama
    model that scans the whole cost map and may ask the server, milliseconds per hit. The price of one
    stored answer does not change, so it is computed once per (model, usage) and reused."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    try:
        usage_key = orjson.dumps(usage, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return
    key = (
        call_type,
        str(kwargs.get("model")),
        str(kwargs.get("custom_llm_provider")),
        str(kwargs.get("api_base")),
        usage_key,
    )
    original = logging_obj.response_cost_calculator

    def response_cost_calculator(*args: Any, **options: Any) -> float | None:
        if options.get("cache_hit") is not False or args:
            return original(*args, **options)  # type: ignore[no-any-return]
        if key in _SAVED_COSTS:
            _SAVED_COSTS.move_to_end(key)
            return _SAVED_COSTS[key]
        cost = original(**options)
        _SAVED_COSTS[key] = cost
        while len(_SAVED_COSTS) > 4096:
            _SAVED_COSTS.popitem(last=False)
        return cost  # type: ignore[no-any-return]

    setattr(logging_obj, "response_cost_calculator", response_cost_calculator)  # noqa: B010


def _response_object(kind: RequestKind, payload: Any, litellm: Any) -> Any:
    if kind == "embedding":
        result = litellm.EmbeddingResponse(**payload)
    elif kind == "text":
        result = litellm.TextCompletionResponse(**payload)
    else:
        from litellm.litellm_core_utils.llm_response_utils.convert_dict_to_response import (
            convert_to_model_response_object,
        )

        result = convert_to_model_response_object(
            response_object=dict(payload), model_response_object=litellm.ModelResponse()
        )
    hidden = getattr(result, "_hidden_params", None)
    if isinstance(hidden, dict):
        hidden["cache_hit"] = True
    return result


# --- installation --------------------------------------------------------------------------------------


def install_fast_path(plugin: CachePlugin) -> None:
    """Insert the fast path into the proxy app's middleware stack (no-op when disabled, outside a proxy,
    or already installed). Safe before the stack is built: it is then inserted when Starlette builds it."""
    if not plugin.settings.fast_path.enabled or not getattr(plugin, "proxy_mode", False):
        return
    state = install_in_proxy_app(
        _INSTALLED_ATTR,
        "fast path",
        lambda app, inside: FastPathApp(app, plugin, renders_refusals=inside),
    )
    if state == "installed":
        log.info("litellm_cache_plugin fast path installed")
    elif state == "deferred":
        log.info("litellm_cache_plugin fast path will be installed when the app starts")


__all__ = ["FastPathApp", "install_fast_path"]
