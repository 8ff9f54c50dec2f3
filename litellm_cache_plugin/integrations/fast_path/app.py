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
    normal pipeline unchanged, with the consumed request body replayed, inside
    ``after_response.pass_through`` (it marks when the response was sent: a miss's answer is written
    after that).

The decision, cheapest first
    1. Route, method and size from the ASGI scope; the body parsed once with orjson and shape-checked:
       only the output parameters (all part of the key) and a few fields LiteLLM merely reads
       (``stream``, ``stream_options``, ``metadata``, ``user``, ``cache``) may be present, with the types
       LiteLLM accepts; any other field (routing, fallbacks, mock responses, timeouts, tags...) is left
       to the pipeline.
    2. A per-process hint maps the caller's credentials (a hash of the auth headers) to the tenant of
       its last successful authentication here. With a hint, a raw existence probe of the store
       decides most misses without running auth at all; the hint only chooses what to probe, it never
       decides what is served. A credential on a streak of hits (``PROBE_SKIP_AFTER`` in a row)
       authenticates first instead, since a hit computes the probe's work again after auth. (A
       request whose setup the opt-in reuse remembers needs no probe: it runs neither auth nor
       setup, and its lookup reads the store once.)
    3. LiteLLM's own ``user_api_key_auth`` (same function, same key cache, same custom_auth,
       ``custom_auth_run_common_checks`` / ``enable_post_custom_auth_checks`` behaviour, budgets and
       budget reservation); a refusal is raised as-is. With ``fast_path.auth_reuse_seconds`` (opt-in)
       an accepted verdict of the same credential on the same route, younger than that and of a key
       neither blocked nor expired, stands in for it (``verdicts``). Then LiteLLM's key model-access check
       (``can_key_call_model``): a key that may not use the model is never served here (the normal
       pipeline decides what it gets), and team model lists likewise.
    4. The route's own request setup (``add_litellm_data_to_request``; an identical request whose fresh
       verdict equals the one a setup was done under within ``fast_path.setup_reuse_seconds`` gets a
       copy of that setup instead, see ``verdicts``) and LiteLLM's built-in pre-call
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
    (``kwargs["stream"]`` is False) whatever the client asked for. When no registered callback would
    see it (``observers``: no logging integration, only LiteLLM hooks that ignore a zero-cost cache
    hit), it is not logged at all and counted as ``hit_not_logged``; the plugin's own stats, metrics
    and savings count it either way.

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

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

import orjson

from litellm_cache_plugin.engine import Lookup, Prefetched
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.after_response import pass_through
from litellm_cache_plugin.integrations.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    install_in_proxy_app,
)
from litellm_cache_plugin.integrations.edge import hit_edge_headers
from litellm_cache_plugin.integrations.fast_path.groups import (
    GroupInfo,
    _aliased,
    deployment_hooks,
    group_info,
    requested_model,
    same_version,
    sdk_kwargs,
)
from litellm_cache_plugin.integrations.fast_path.hit_log import _count_tokens, _log_hit
from litellm_cache_plugin.integrations.fast_path.pipeline import (
    _limiters,
    _replace,
    _request_shape,
    is_rate_limiter,
)
from litellm_cache_plugin.integrations.fast_path.reuse import FreshSetupKey, ReuseMemory, Verdict, VerdictKey
from litellm_cache_plugin.integrations.fast_path.verdicts import refresh_setup, setup_key
from litellm_cache_plugin.integrations.fast_path.wire import (
    CALL_TYPES,
    ROUTES,
    chat_stream_events,
    check_body,
    client_payload,
    credential_fingerprint,
    declared_length,
    embedding_body,
    embedding_inputs,
    header_bypasses,
    header_map,
    hit_headers,
    include_stream_usage,
    is_json_content,
    prefixed_receive,
    read_body,
    route_kind,
    text_stream_events,
)
from litellm_cache_plugin.integrations.host import CacheHost
from litellm_cache_plugin.integrations.lazy_features import bypass_idle_lazy_features
from litellm_cache_plugin.payloads import (
    answer_encoding,
    canonical_response,
    encode_vector,
    requested_encoding,
)
from litellm_cache_plugin.policy.keys import RequestKind
from litellm_cache_plugin.region import RequestContext, identity_of
from litellm_cache_plugin.store import StoreError

log = logging.getLogger("litellm_cache_plugin")

HINT_TTL_S: Final = 300.0
HINT_CAPACITY: Final = 10_000
# A credential whose last this-many fast-path requests were all served authenticates first, without
# the existence probe: on a hit the probe's hook, context and key are computed again after auth anyway
# (about 4% of a hit's CPU), while the one miss that ends a streak runs LiteLLM's auth twice, in the
# fast path and in the pipeline (about five times the probe). Eight in a row: the trade breaks even
# at a hit rate of about 0.8.
PROBE_SKIP_AFTER: Final = 8
_INSTALLED_ATTR = "_lcp_fast_path_installed"


@dataclass
class _Hint:
    """The identity of a credential's last successful authentication here (``identity_of``'s fields,
    the attribute names the plugin's pre-call hook reads)."""

    api_key: str | None
    team_id: str | None
    user_id: str | None
    org_id: str | None
    at: float
    served_in_a_row: int = 0  # this credential's fast-path requests served since its last pass-through


def probes_first(hint: _Hint | None) -> TypeGuard[_Hint]:
    """Whether a request with this credential probes the store before running auth (see
    ``PROBE_SKIP_AFTER``): only with a hint (the probe needs its tenant), and not on a hit streak."""
    return hint is not None and hint.served_in_a_row < PROBE_SKIP_AFTER


class _Skip(Exception):
    """Internal: this request goes down the normal pipeline, for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FastPathApp:
    """The ASGI callable installed in the proxy's middleware stack (see module docstring)."""

    def __init__(self, app: ASGIApp, plugin: CacheHost, *, renders_refusals: bool) -> None:
        self.app = app
        self.plugin = plugin
        self.settings = plugin.settings.fast_path
        # Under ExceptionMiddleware an auth refusal raised here is rendered like the route's own.
        self.renders_refusals = renders_refusals
        self._hints: OrderedDict[str, _Hint] = OrderedDict()
        self.reuse = ReuseMemory(self.settings)
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
            await pass_through(self.app, scope, receive, send)
            return
        body, consumed = await read_body(receive, self.settings.max_body_bytes)
        replay = prefixed_receive(consumed, receive)
        if body is None:
            await pass_through(self.app, scope, replay, send)
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
        self.note_outcome(attempt.fingerprint, served)
        if served:
            return
        await attempt.release_reservation()
        if state_before is not None and isinstance(state, dict):
            # The normal pipeline authenticates again: leave it the request state it would have seen.
            state.clear()
            state.update(state_before)
        try:
            # The pipeline's write of a miss waits until this response is sent (after_response).
            await pass_through(self.app, scope, replay, send)
        finally:
            # A miss's read took its single flight's fill lock (a read that took one always ends
            # here): the pipeline's lookup led with it, or it is given back now.
            if attempt.prefetched is not None:
                self.plugin.region.drop_read_ahead(attempt.prefetched)

    # -- caches ----------------------------------------------------------------------------------------

    def note_outcome(self, fingerprint: str | None, served: bool) -> None:
        """Count a credential's hit streak (``probes_first``); any request not served ends it."""
        hint = self._hints.get(fingerprint) if fingerprint is not None else None
        if hint is not None:
            hint.served_in_a_row = min(hint.served_in_a_row + 1, PROBE_SKIP_AFTER) if served else 0

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
        identity = identity_of(auth)
        before = self._hints.get(fingerprint)
        self._hints[fingerprint] = _Hint(
            api_key=identity.api_key_hash,
            team_id=identity.team_id,
            user_id=identity.user_id,
            org_id=identity.org_id,
            at=time.monotonic(),
            served_in_a_row=before.served_in_a_row if before is not None else 0,
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
        lit = compat.fast_path_internals()
        caps = lit.ProxyLogging.callback_capabilities()
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
            if not isinstance(callback, lit.CustomLogger) or id(callback) in seen:
                continue
            seen.add(id(callback))
            own = vars(type(callback))
            builtin = compat.is_litellm_module(type(callback).__module__)
            if id(callback) == id(self.plugin):  # the plugin itself (typed here by what it offers)
                plan.append(callback)
                continue
            if not builtin and any(name in own for name in post_hooks):
                stand_aside = True
            overrides = (
                "async_pre_call_hook" in own
                and type(callback).async_pre_call_hook is not lit.CustomLogger.async_pre_call_hook
            )
            if not overrides:
                continue
            if not builtin:
                stand_aside = True  # unknown rules: the normal pipeline runs it
            else:
                plan.append(callback)
        self._hook_plan_key, self._hook_plan = key, (plan, stand_aside)
        return self._hook_plan


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
        self.fingerprint: str | None = None  # the credential's (credential_fingerprint), once read
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
            await compat.fast_path_internals().release_unbound_budget_reservation(reservation)
        except Exception:
            log.warning("fast path could not release a budget reservation", exc_info=True)

    async def run(self, send: Send) -> bool:
        started = time.time()
        data = orjson.loads(self.body)
        problem = check_body(data, self.kind)
        if problem is not None:
            raise _Skip(problem)
        proxy_server = compat.fast_path_internals().proxy_server
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
        self.fingerprint = fingerprint
        hint = self.owner.hint_for(fingerprint)
        path = str(self.scope.get("path", ""))
        raw_headers = self.scope.get("headers") or ()
        reusable = self.owner.reuse.reusable_verdict(fingerprint, path, raw_headers)
        memo: tuple[VerdictKey, Verdict, str] | None = None
        remembered: tuple[dict[str, Any], Any] | None = None
        if reusable is not None:
            verdict_key, verdict = reusable
            key = self._setup_key()
            memo = (verdict_key, verdict, key)
            remembered = self.owner.reuse.remembered_setup(verdict_key, verdict, key)
        # The probe only spares a miss LiteLLM's auth and setup; a request whose setup is remembered
        # needs neither, and its lookup reads the store once itself (_response_hit).
        if remembered is None and probes_first(hint) and not await self._probe(data, hint, info):
            raise _Skip("probe_miss")  # decided without running auth

        request_data: dict[str, Any] | None = None
        fresh_memo: tuple[FreshSetupKey, bytes] | None = None  # setup_reuse_seconds: key, verdict
        if reusable is None:
            self.authenticating = True
            auth = await self._authenticate()
            self.authenticating = False
            self.owner.remember(fingerprint, auth)
            self.owner.reuse.remember_verdict(fingerprint, path, raw_headers, auth)
        else:
            if remembered is not None:
                request_data, auth = remembered
            else:
                auth = reusable[1].copy_auth()
            self.request = self._request()  # what the route's request setup reads
            self.plugin.engine.stats.bump("fast_path", model_group, "auth_reused")
        if not await self._may_use(auth, model_group, router, proxy_server):
            raise _Skip("model_access")
        if reusable is None and fingerprint is not None and self.owner.settings.setup_reuse_seconds > 0:
            # LiteLLM's auth ran: an identical request's setup done under an equal verdict stands in.
            fresh_key = (fingerprint, path, self._setup_key())
            found = self.owner.reuse.setup_for_verdict(fresh_key, auth)
            if found is not None:
                request_data, auth = found
            else:
                verdict_kept = self.owner.reuse.verdict_to_keep(fresh_key, auth)  # before setup edits it
                if verdict_kept is not None:
                    fresh_memo = (fresh_key, verdict_kept)
        if request_data is None:
            setup_began = self.owner.reuse.clock()
            request_data = await self._setup(auth, proxy_server)
            if memo is not None and request_data is not None:
                self.owner.reuse.remember_setup(*memo, request_data, auth)
            if fresh_memo is not None and request_data is not None:
                self.owner.reuse.remember_setup_for_verdict(*fresh_memo, request_data, auth, at=setup_began)
        else:
            refresh_setup(
                request_data,
                received_at=getattr(self.request.state, "litellm_received_at", None),
                now=time.time(),
            )
            self.plugin.engine.stats.bump("fast_path", model_group, "setup_reused")
        if request_data is None or request_data.get("model") != model_group:
            raise _Skip("request_setup")
        call_id = compat.fast_path_internals().resolve_litellm_call_id(self.headers.get("x-litellm-call-id"))
        request_data["litellm_call_id"] = call_id
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
        plugin.region.accounting.account_served(ctx, self.served, started)
        logged = _log_hit(
            kind=self.kind,
            kwargs={**kwargs, "litellm_call_id": call_id},
            response=response,
            start=started,
            end=time.time(),
            apply_rate_limits=self.owner.settings.apply_rate_limits,
        )
        if not logged:
            plugin.engine.stats.bump("fast_path", model_group, "hit_not_logged")
        return True

    # -- steps -----------------------------------------------------------------------------------------

    async def _probe(self, data: dict[str, Any], hint: _Hint, info: GroupInfo) -> bool:
        """Is there possibly an entry? Keys computed with the remembered tenant, one raw store read."""
        plugin = self.plugin
        # A shallow copy is enough: the hook replaces what it edits (metadata, cache) and only sets
        # top-level fields; nested client objects (messages) are read, never changed.
        provisional: dict[str, Any] = dict(data)
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
            found = await store.get_many([plugin.region.key_for(ctx, item) for item in items])
            return all(raw is not None for raw in found)
        # A miss's read also takes the fill lock its single flight will need (the hook path's lookup
        # then needs no round trip at all); given back when the request is over unless it led.
        self.prefetched = await plugin.region.read_ahead(ctx, plugin.region.key_for(ctx))
        return self.prefetched.raw is not None

    def _setup_key(self) -> str:
        """What identifies this request to a remembered setup (``verdicts.setup_key``)."""
        client = self.scope.get("client")
        return setup_key(
            self.scope.get("headers") or (),
            str(client[0]) if client else None,
            self.scope.get("query_string", b""),
            self.body,
        )

    def _request(self) -> Any:
        """A Request over this scope with the body replayed to it."""
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
        return Request(dict(self.scope), receive)

    async def _authenticate(self) -> Any:
        """LiteLLM's own auth on a Request over this scope (the body replayed to it)."""
        auth_module = compat.fast_path_internals()
        request = self._request()
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
        can_key_call_model = compat.fast_path_internals().can_key_call_model
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
        lit = compat.fast_path_internals()
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
        data = await lit.add_litellm_data_to_request(
            data=data,
            request=self.request,
            general_settings=proxy_server.general_settings,
            user_api_key_dict=auth,
            version=proxy_server.version,
            proxy_config=proxy_server.proxy_config,
        )
        return data

    async def _run_hooks(
        self, plan: Sequence[Any], auth: Any, data: dict[str, Any], *, limiter: bool
    ) -> bool:
        """Run pre-call hooks like ``ProxyLogging.pre_call_hook`` does. False: not servable here (the
        normal pipeline runs them again and answers what they decide)."""
        lit = compat.fast_path_internals()
        cache = lit.proxy_server.proxy_logging_obj.call_details["user_api_key_cache"]
        call_type = CALL_TYPES[self.kind]
        # What the answer depends on, before any hook ran: compared once at the end (the plugin's own
        # hook never changes these fields), not around every hook.
        before = _request_shape(data)
        for callback in plan:
            if is_rate_limiter(callback) != limiter:
                continue
            if isinstance(callback, lit.rate_limiter_v3):
                response = await callback.async_pre_call_hook(
                    user_api_key_dict=auth,
                    cache=cache,
                    data=data,
                    call_type=call_type,
                    endpoint_type=lit.EndpointType.GENERIC,
                )
            else:
                response = await callback.async_pre_call_hook(
                    user_api_key_dict=auth, cache=cache, data=data, call_type=call_type
                )
            if isinstance(response, dict):
                data = response if response is data else _replace(data, response)
            elif response is not None:
                return False  # a rejection message or exception object: the proxy's own words
        return _request_shape(data) == before  # else a hook rerouted or rewrote the request

    async def _response_hit(
        self,
        ctx: RequestContext,
        request_data: Mapping[str, Any],
        model_group: str,
        call_id: str,
        proxy_server: Any,
    ) -> tuple[list[tuple[bytes, bytes]], list[bytes], Any] | None:
        plugin = self.plugin
        key = plugin.region.key_for(ctx)
        if self.prefetched is None and not ctx.controls.no_cache:
            # No probe ran: one read, whose absence the hook path's lookup then reuses.
            try:
                self.prefetched = await plugin.region.read_ahead(ctx, key)
            except StoreError:
                # Not a second try within this path (a slow backend would then cost two deadlines
                # here): the hook path's lookup fails open and counts it.
                return None
            if self.prefetched.raw is None:
                return None
        lookup = await exact_lookup(plugin, ctx, key, self.prefetched)
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
        keys = [plugin.region.key_for(ctx, item) for item in inputs]
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


async def exact_lookup(
    plugin: CacheHost, ctx: RequestContext, key: str, prefetched: Prefetched | None = None
) -> Lookup:
    """The exact-layer entry for ``ctx``, without the coordination of ``lookup_response`` (single-flight
    claims, stale refreshes, semantic search): a request this path does not serve goes down the hook
    path, which must find no claim of ours waiting for it. ``prefetched``: the probe's read, reused
    when it is of the same key and counters (same tenant: the key holds it)."""
    return await plugin.region.peek_response(ctx, prefetched)


# --- installation --------------------------------------------------------------------------------------


def install_fast_path(plugin: CacheHost) -> None:
    """Insert the fast path into the proxy app's middleware stack (no-op when disabled, outside a proxy,
    when this LiteLLM lacks an internal it needs (see ``compat``), or already installed). Safe before the
    stack is built: it is then inserted when Starlette builds it."""
    if not plugin.settings.fast_path.enabled or not getattr(plugin, "proxy_mode", False):
        return
    if not compat.fast_path_support().ok:
        return  # this LiteLLM lacks an internal the fast path needs (logged once, by the check)
    state = install_in_proxy_app(
        _INSTALLED_ATTR,
        "fast path",
        lambda app, inside: FastPathApp(app, plugin, renders_refusals=inside),
        # The middleware stack's costliest layer does nothing on these routes (lazy_features).
        lambda stack: bypass_idle_lazy_features(stack, ROUTES),
    )
    if state == "installed":
        log.info("litellm_cache_plugin fast path installed")
    elif state == "deferred":
        log.info("litellm_cache_plugin fast path will be installed when the app starts")


__all__ = ["FastPathApp", "install_fast_path"]
