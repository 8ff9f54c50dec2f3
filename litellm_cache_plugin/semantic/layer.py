"""The semantic layer as the LiteLLM glue uses it: lookup and add (the scope is built in ``scope``).

Flow for a chat request (the glue does this; nothing here knows LiteLLM):

1. ``scoped = semantic_scope(request, tenant)``; ``None`` means not eligible (``semantic_prompt``:
   the same with a conversation's earlier turns, passed as ``context=`` to ``resolve`` and ``add``).
2. Exact lookup misses -> ``match = await index.lookup(scope, text, now=now)`` (or
   ``result = await index.resolve(...)``, which also says why nothing was served: see
   :class:`SemanticLookup`; a guard refusal carries its rule and tokens).
3. ``match`` names an exact-layer key: fetch that entry through the engine (which checks tenant,
   generation, model version and freshness). If the engine misses, call ``index.forget(...)``.
4. After an upstream answer is stored under the exact key: ``await index.add(scope, text, key, ttl=...)``.

Scope (``scope.semantic_prompt``): a match is only possible between requests equal in everything but
the last user turn: tenant, model group and version, system prompt and earlier turns, and every
output-affecting parameter. It is the exact key's canonical material with the last user message
taken out. With
``layers.semantic.conversations: by_meaning`` (:func:`semantic_prompt`), the earlier user and
assistant turns leave the scope too (contents, number and roles): they are stored with the record as
its ``context``, and a candidate found by its last turn is judged on the conversation as a whole
(``conversation.decide``: does the last message need its history, facts stated earlier, the
differing user turns by meaning, the last assistant turn for a reply; a refusal's rule is
``conversation_<rule>``). Single prompts get the same scope in both modes.

Replicas: every record is written to the shared store under ``{ns}:s:{<scope>}:{n}``, where ``n``
comes from the per-scope counter ``{ns}:s:{<scope>}:seq`` (``incr``). A lookup reads the counter (one
round trip, in parallel with the embedding) and, when another replica has added records since, loads
the missing ones with ``get_many``: at most ``sync_batch`` inline, the rest in a background task. A new
process starts empty and fills each scope on its first lookup. ``{<scope>}`` is a Redis Cluster hash
tag, so a scope's keys share a slot.

Shared index (``settings.index = "redis+search://..."``): the vectors are not kept in the process
at all. ``add`` writes one document to a search engine shared by every replica, ``resolve`` asks it
for the nearest records of the scope (a TAG filter), ``forget`` deletes one; no sequence counter, no
sync, nothing to load at start (see ``shared``).

Failure: every embedder or store error is a miss (logged), never an exception to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from litellm_cache_plugin.semantic.conversation import (
    REPLY_THRESHOLD,
    USER_CONTEXT_THRESHOLD,
    Conversation,
    Turn,
    TurnRefusal,
    decide,
    texts_to_embed,
)
from litellm_cache_plugin.semantic.embedder import Embedder, require_semantic_extra
from litellm_cache_plugin.semantic.guard import PromptFeatures, Refusal, check, features
from litellm_cache_plugin.settings import SemanticLayer
from litellm_cache_plugin.store.base import Store, StoreError

if TYPE_CHECKING:
    from litellm_cache_plugin.semantic.index import Candidate, Record, Vector, VectorIndex
    from litellm_cache_plugin.semantic.shared import SharedVectorIndex

__all__ = [
    "SemanticIndex",
    "SemanticLookup",
    "SemanticMatch",
    "SemanticRefusal",
]

log = logging.getLogger("litellm_cache_plugin.semantic")

# How long a sequence number whose record is not there yet (the writer's SET still in flight, or the
# record expired) is retried before it is given up.
MISSING_GRACE_S = 2.0
_MAX_MISSING = 1024
_QUERY_CACHE = 1024
_GET_MANY_CHUNK = 256
# Background deletions of dead records on a shared index in flight at once; beyond, they expire.
_MAX_BACKGROUND = 256


# --- index ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticMatch:
    """A cached prompt close enough to serve: fetch ``entry_key`` from the exact layer."""

    entry_key: str
    similarity: float
    prompt: str
    scope: str
    # The cached conversation's earlier turns (conversations scoped by meaning), for a verifier that
    # must judge the conversations, not their last messages alone.
    context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SemanticRefusal:
    """A cached prompt above the threshold that the near-miss guard refused to serve.

    ``rule`` (``"number"``, ``"entity"``, ``"negation"``...; one of ``guard.RULES``) is the reason, fit
    for a metric label. ``detail`` names the differing tokens ("cached '3' / asked '5'"): prompt text,
    so for logs and tools only, never for labels or spans."""

    rule: str
    detail: str
    similarity: float
    prompt: str
    entry_key: str
    scope: str

    @classmethod
    def of(
        cls, refusal: Refusal, similarity: float, prompt: str, entry_key: str, scope: str
    ) -> SemanticRefusal:
        return cls(refusal.rule, refusal.detail, similarity, prompt, entry_key, scope)


LookupOutcome = Literal["hit", "refused", "miss", "too_long", "error"]


@dataclass(frozen=True)
class SemanticLookup:
    """Everything one lookup decided (:meth:`SemanticIndex.resolve`).

    - ``outcome == "hit"``: ``match`` is set (candidates above it may have been refused first).
    - ``"refused"``: at least one cached prompt was above the threshold and the guard refused every
      one; ``refusals`` lists them best first and ``reason`` is the rule that refused the best one.
    - ``"miss"``: nothing above the threshold; ``"too_long"``: the prompt is over ``max_chars``;
      ``"error"``: the embedder or the store failed (the lookup failed open).
    """

    outcome: LookupOutcome
    match: SemanticMatch | None = None
    refusals: tuple[SemanticRefusal, ...] = ()

    @property
    def reason(self) -> str | None:
        """The rule that refused the best candidate, when the outcome is ``"refused"``."""
        if self.outcome != "refused" or not self.refusals:
            return None
        return self.refusals[0].rule


_MISS = SemanticLookup("miss")
_TOO_LONG = SemanticLookup("too_long")
_ERROR = SemanticLookup("error")


@dataclass
class _SyncState:
    seen_upto: int = 0  # every sequence number <= this has been loaded (or given up)
    own: set[int] = field(default_factory=set)  # numbers above seen_upto this process wrote itself
    missing: dict[int, float] = field(default_factory=dict)  # number -> first time it was absent
    backlog: list[int] = field(default_factory=list)  # older numbers left to the background loader
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loader: asyncio.Task[None] | None = None


class SemanticIndex:
    """Semantic lookups and writes for every scope of one process, kept in sync through ``store``.

    ``store`` should be the same (guarded) store the engine uses; ``namespace`` the plugin namespace.
    Raises :class:`~litellm_cache_plugin.semantic.embedder.SemanticUnavailable` (with the install
    hint) when the ``[semantic]`` extra is missing.

    ``shared``: the vectors live in a shared search engine instead of this process (built from
    ``settings.index`` when that is a URL; ``index_timeout`` is then each call's deadline, seconds).
    """

    def __init__(
        self,
        store: Store,
        *,
        namespace: str,
        embedder: Embedder,
        settings: SemanticLayer | None = None,
        clock: Callable[[], float] = time.time,
        shared: SharedVectorIndex | None = None,
        index_timeout: float = 0.1,
    ) -> None:
        require_semantic_extra()
        from litellm_cache_plugin.semantic.index import VectorIndex

        self.store = store
        self.namespace = namespace
        self.embedder = embedder
        self.settings = settings or SemanticLayer(enabled=True)
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self._index: VectorIndex = VectorIndex(
            max_per_scope=self.settings.max_entries_per_scope, max_total=self.settings.max_entries
        )
        self._states: dict[str, _SyncState] = {}
        self._vectors: OrderedDict[str, Vector] = OrderedDict()
        self._features: OrderedDict[str, PromptFeatures] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        if shared is None and self.settings.index != "local":
            from litellm_cache_plugin.semantic.shared import open_shared_index

            shared = open_shared_index(self.settings.index, timeout=index_timeout)
        self.shared: SharedVectorIndex | None = shared
        if shared is not None and getattr(store, "name", None) == "memory":
            # Replicas would find each other's vectors but not the entries they point to, and delete
            # them as dead: a shared index wants a shared backend.
            log.warning("layers.semantic.index is shared but the backend is memory://: use a shared backend")
        self._dims: int | None = None  # size of the embedder's vectors, once one was seen
        # Cosine the differing earlier user turns of two conversations must reach (None: the layer's
        # threshold), and the last assistant turns before a reply (semantic/conversation.py).
        self.context_threshold: float | None = USER_CONTEXT_THRESHOLD
        self.reply_threshold = REPLY_THRESHOLD

    # -- keys ---------------------------------------------------------------------------------------

    def _skey(self, scope: str) -> str:
        # The embedder's id is part of the store scope: vectors of two models never meet.
        return hashlib.sha256(f"{scope}\x00{self.embedder.model_id}".encode()).hexdigest()[:32]

    def record_key(self, scope: str, n: int) -> str:
        return f"{self.namespace}:s:{{{self._skey(scope)}}}:{n}"

    def sequence_key(self, scope: str) -> str:
        return f"{self.namespace}:s:{{{self._skey(scope)}}}:seq"

    # -- public API ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the embedding model now (in a thread) instead of on the first request; with a shared
        index, also connect to it and create its index (a failure there is logged, never raised)."""
        load = getattr(self.embedder, "load", None)
        if callable(load):
            await asyncio.to_thread(load)
        if self.shared is not None:
            try:
                await self.shared.prepare(len(await self._vector("ping")))
            except Exception as error:
                log.warning("semantic index not prepared (lookups fail open until it answers): %s", error)

    async def lookup(
        self,
        scope: str,
        text: str,
        *,
        now: float | None = None,
        min_generation: int = 0,
        context: Sequence[Turn] = (),
    ) -> SemanticMatch | None:
        """The best cached prompt of ``scope`` that may answer ``text``, or ``None``.

        ``min_generation``: records written under an older model generation are skipped. Same as
        ``(await resolve(...)).match``; :meth:`resolve` also says why nothing was served.
        """
        return (
            await self.resolve(scope, text, now=now, min_generation=min_generation, context=context)
        ).match

    async def resolve(
        self,
        scope: str,
        text: str,
        *,
        now: float | None = None,
        min_generation: int = 0,
        context: Sequence[Turn] = (),
    ) -> SemanticLookup:
        """Look ``text`` up in ``scope``: a match, or why there is none (see :class:`SemanticLookup`).

        Counts ``lookup`` and one of ``hit``, ``refused`` (plus ``guard_<rule>`` per refused
        candidate), ``miss``, ``too_long`` or ``error`` in :attr:`stats`.
        """
        now = self.clock() if now is None else now
        self.stats["lookup"] += 1
        if len(text) > self.settings.max_chars:
            self.stats["too_long"] += 1
            return _TOO_LONG
        skey = self._skey(scope)
        if self.shared is not None:
            return await self._resolve_shared(scope, skey, text, now, min_generation, tuple(context))
        # Embedding (a thread) and the store round trip run at the same time.
        embedded, synced = await asyncio.gather(
            self._vector(text), self._sync(skey, now), return_exceptions=True
        )
        for outcome in (embedded, synced):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancellation and the like are not ours to swallow
                self.stats["error"] += 1
                log.warning("semantic lookup failed open: %r", outcome)
                return _ERROR
        query: Vector = embedded  # type: ignore[assignment]
        self._index.ensure_scope(skey, len(query))
        try:
            candidates = self._index.search(
                skey,
                query,
                threshold=self.settings.threshold,
                k=self.settings.candidates,
                now=now,
                min_generation=min_generation,
            )
        except ValueError as error:  # a vector of the wrong size: another model under the same id
            self.stats["error"] += 1
            log.warning("semantic search failed open: %s", error)
            return _ERROR
        return await self._decide(scope, skey, text, candidates, tuple(context))

    async def _resolve_shared(
        self, scope: str, skey: str, text: str, now: float, min_generation: int, context: tuple[Turn, ...]
    ) -> SemanticLookup:
        """:meth:`resolve` on the shared index: embed, then one search filtered by the scope."""
        assert self.shared is not None
        try:
            query = await self._vector(text)
            candidates = await self.shared.search(
                skey,
                query,
                threshold=self.settings.threshold,
                k=self.settings.candidates,
                now=now,
                min_generation=min_generation,
                features=self._prompt_features,
            )
        except (StoreError, ValueError) as error:
            # A slow or dead search server (the deadline and the breaker made it a StoreError), or a
            # vector of the wrong size: a miss, never an error for the request.
            self.stats["error"] += 1
            log.warning("semantic lookup failed open: %s", error)
            return _ERROR
        except Exception as error:  # the embedder
            self.stats["error"] += 1
            log.warning("semantic lookup failed open: %r", error)
            return _ERROR
        return await self._decide(scope, skey, text, candidates, context)

    async def _decide(
        self,
        scope: str,
        skey: str,
        text: str,
        candidates: Sequence[Candidate],
        context: tuple[Turn, ...],
    ) -> SemanticLookup:
        """:meth:`_judge`, after embedding what a conversation's candidates need."""
        turn_check: Callable[[Candidate], TurnRefusal | None] | None = None
        if candidates and (context or any(c.context for c in candidates)):
            try:
                turn_check = await self._conversation_checker(text, candidates, context)
            except Exception as error:  # the embedder
                self.stats["error"] += 1
                log.warning("semantic lookup failed open (earlier turns): %r", error)
                return _ERROR
        return self._judge(scope, skey, text, candidates, turn_check)

    async def _conversation_checker(
        self, text: str, candidates: Sequence[Candidate], context: tuple[Turn, ...]
    ) -> Callable[[Candidate], TurnRefusal | None]:
        """The whole-conversation check (:func:`~litellm_cache_plugin.semantic.conversation.decide`)
        with every text it may compare embedded in one batch: only for the candidates the last-turn
        guard lets through (the others are refused before their history is looked at), and only the
        texts their last messages need (none when both stand alone)."""
        mine = self._prompt_features(text) if self.settings.guard else None
        todo = [c for c in candidates if mine is None or check(c.features, mine) is None]
        asked = Conversation(context, text)
        texts = {
            t
            for c in todo
            for t in texts_to_embed(
                Conversation(c.context, c.text),
                asked,
                self._prompt_features,
                reply_threshold=self.reply_threshold,
            )
        }
        readable = sorted(t for t in texts if self._model_reads_all_of(t))
        self.stats["turns_too_long"] += len(texts) - len(readable)
        vectors = await self._vectors_of(readable)
        self.stats["turns_compared"] += len(readable)
        threshold = self.settings.threshold if self.context_threshold is None else self.context_threshold

        def similarity(a: str, b: str) -> float:
            # decide() asks only for texts texts_to_embed listed (a tested property); a text it did
            # not list, or one longer than the model reads (its vector would be of its start only),
            # is a refusal here, never an error on the request path.
            va, vb = vectors.get(a), vectors.get(b)
            return -1.0 if va is None or vb is None else float(va @ vb)

        def turn_check(candidate: Candidate) -> TurnRefusal | None:
            return decide(
                Conversation(candidate.context, candidate.text),
                asked,
                similarity,
                threshold=threshold,
                reply_threshold=self.reply_threshold,
                guard=self.settings.guard,
                features=self._prompt_features,
            )

        return turn_check

    def _judge(
        self,
        scope: str,
        skey: str,
        text: str,
        candidates: Sequence[Candidate],
        turn_check: Callable[[Candidate], TurnRefusal | None] | None = None,
    ) -> SemanticLookup:
        """The first candidate the guard (and, for a conversation, ``turn_check`` on its earlier
        turns) lets through, or why none (counted in :attr:`stats`)."""
        if not candidates:
            self.stats["miss"] += 1
            return _MISS
        mine = self._prompt_features(text) if self.settings.guard else None
        refusals: list[SemanticRefusal] = []
        for candidate in candidates:
            if mine is not None:
                refusal = check(candidate.features, mine)
                if refusal is not None:
                    self.stats[f"guard_{refusal.rule}"] += 1
                    refusals.append(
                        SemanticRefusal.of(
                            refusal, candidate.similarity, candidate.text, candidate.entry_key, scope
                        )
                    )
                    log.debug(
                        "semantic candidate refused (%s, similarity %.3f): %s",
                        refusal.rule,
                        candidate.similarity,
                        refusal.detail,
                    )
                    continue
            turn = turn_check(candidate) if turn_check is not None else None
            if turn is not None:
                self.stats[f"guard_{turn.rule}"] += 1
                refusals.append(
                    SemanticRefusal(
                        turn.rule,
                        f"turn {turn.turn}: {turn.detail}" if turn.turn >= 0 else turn.detail,
                        candidate.similarity,
                        candidate.text,
                        candidate.entry_key,
                        scope,
                    )
                )
                log.debug("semantic conversation refused (%s): %s", turn.rule, turn.detail)
                continue
            if self.shared is None:
                self._index.touch(skey, candidate.entry_key)
            self.stats["hit"] += 1
            match = SemanticMatch(
                candidate.entry_key, candidate.similarity, candidate.text, scope, candidate.context
            )
            return SemanticLookup("hit", match, tuple(refusals))
        self.stats["refused"] += 1
        self.stats["miss"] += 1  # still a miss for whoever counts misses
        return SemanticLookup("refused", None, tuple(refusals))

    async def add(
        self,
        scope: str,
        text: str,
        entry_key: str,
        *,
        ttl: float,
        generation: int = 0,
        now: float | None = None,
        context: Sequence[Turn] = (),
    ) -> bool:
        """Make ``text`` (cached under the exact key ``entry_key``) findable for ``ttl`` seconds.

        ``context``: the earlier turns of a conversation scoped by meaning (:class:`SemanticPrompt`),
        stored with the record; a lookup's own earlier turns are judged against them as a whole.

        Returns False when nothing was added (too long, embedder failure). A store failure still
        leaves the prompt in this process's index."""
        context = tuple(context)
        now = self.clock() if now is None else now
        if len(text) > self.settings.max_chars or not ttl > 0:
            return False
        skey = self._skey(scope)
        try:
            vector = await self._vector(text)
        except Exception as error:
            self.stats["error"] += 1
            log.warning("semantic add skipped: %r", error)
            return False
        if self.shared is not None:
            try:
                await self.shared.add(
                    skey,
                    entry_key,
                    text,
                    vector,
                    ttl=ttl,
                    expires_at=now + ttl,
                    generation=generation,
                    created_at=now,
                    context=context,
                )
            except (StoreError, ValueError) as error:
                self.stats["error"] += 1
                log.warning("semantic record not shared: %s", error)
                return False
            self.stats["add"] += 1
            return True
        from litellm_cache_plugin.semantic.index import Record, encode_record

        prompt_features = self._prompt_features(text)
        self._index.add(
            skey,
            entry_key,
            text,
            vector,
            expires_at=now + ttl,
            generation=generation,
            created_at=now,
            prompt_features=prompt_features,
            context=context,
        )
        self.stats["add"] += 1
        record = Record(text, entry_key, vector, now, now + ttl, generation, self.embedder.model_id, context)
        try:
            n = await self.store.incr(self.sequence_key(scope))
            await self.store.set(self.record_key(scope, n), encode_record(record), ttl)
        except (StoreError, ValueError) as error:
            self.stats["error"] += 1
            log.warning("semantic record not shared: %s", error)
            return True
        state = self._states.setdefault(skey, _SyncState())
        if n > state.seen_upto:
            state.own.add(n)
        return True

    def forget(self, scope: str, entry_key: str) -> None:
        """Drop a prompt whose exact entry is gone (expired, evicted, invalidated) from this process,
        or, on a shared index, delete its record there (in the background, best effort)."""
        if self.shared is None:
            self._index.remove(self._skey(scope), entry_key)
            return
        if self._dims is None or len(self._tasks) >= _MAX_BACKGROUND:
            return  # the record still expires with its entry's TTL
        self._spawn(self._forget_shared(self._skey(scope), entry_key, self._dims))

    async def _forget_shared(self, skey: str, entry_key: str, dims: int) -> None:
        assert self.shared is not None
        try:
            if await self.shared.remove(skey, entry_key, dims):
                self.stats["forgotten"] += 1
        except (StoreError, ValueError) as error:
            log.debug("semantic record not deleted: %s", error)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.shared is not None:
            with contextlib.suppress(Exception):
                await self.shared.close()

    def index_stats(self) -> dict[str, Any]:
        if self.shared is not None:
            return {**self.shared.stats(), **{k: v for k, v in sorted(self.stats.items())}}
        return {**self._index.stats(), **{k: v for k, v in sorted(self.stats.items())}}

    # -- embedding --------------------------------------------------------------------------------

    async def _vector(self, text: str) -> Vector:
        """Unit vector of ``text``; the last few are kept, so ``add`` after a missed ``lookup`` is free."""
        from litellm_cache_plugin.semantic.index import unit

        cached = self._vectors.get(text)
        if cached is not None:
            self._vectors.move_to_end(text)
            return cached
        (raw,) = await self.embedder.embed([text])
        vector = unit(raw)
        self._dims = len(vector)
        self._vectors[text] = vector
        if len(self._vectors) > _QUERY_CACHE:
            self._vectors.popitem(last=False)
        return vector

    def _model_reads_all_of(self, text: str) -> bool:
        """Does the embedder read all of ``text`` (when it says how many tokens it reads)? Called
        after the last turn was embedded, so the built-in embedder's tokenizer is already loaded."""
        count = getattr(self.embedder, "token_count", None)
        limit = getattr(self.embedder, "max_tokens", None)
        return count is None or limit is None or count(text) <= limit

    async def _vectors_of(self, texts: Sequence[str]) -> dict[str, Vector]:
        """Unit vectors of ``texts``, the ones not among the last few embedded in one batch."""
        from litellm_cache_plugin.semantic.index import unit

        out: dict[str, Vector] = {}
        missing: list[str] = []
        for text in texts:
            cached = self._vectors.get(text)
            if cached is None:
                missing.append(text)
            else:
                self._vectors.move_to_end(text)
                out[text] = cached
        if missing:
            raws = await self.embedder.embed(missing)
            for text, raw in zip(missing, raws, strict=True):
                vector = out[text] = unit(raw)
                self._dims = len(vector)
                self._vectors[text] = vector
            while len(self._vectors) > _QUERY_CACHE:
                self._vectors.popitem(last=False)
        return out

    def _prompt_features(self, text: str) -> PromptFeatures:
        cached = self._features.get(text)
        if cached is None:
            cached = self._features[text] = features(text)
            if len(self._features) > _QUERY_CACHE:
                self._features.popitem(last=False)
        return cached

    # -- replica sync -----------------------------------------------------------------------------

    def _state(self, skey: str) -> _SyncState:
        state = self._states.get(skey)
        if state is None or (self._index.scope(skey) is None and state.seen_upto):
            # New, or the scope was evicted from this process: load it again from the store.
            if state is not None and state.loader is not None:
                state.loader.cancel()
            state = self._states[skey] = _SyncState()
            if len(self._states) > 2 * self._index.max_scopes:
                self._prune_states()
        return state

    def _prune_states(self) -> None:
        for skey in [s for s in self._states if self._index.scope(s) is None]:
            del self._states[skey]

    async def _sync(self, skey: str, now: float) -> None:
        """Load the records other replicas wrote since the last sync (newest first, bounded)."""
        state = self._state(skey)
        if state.lock.locked():
            return  # another lookup of this scope is syncing: use what is here, do not queue
        async with state.lock:
            try:
                (remote,) = await self.store.get_counters([f"{self.namespace}:s:{{{skey}}}:seq"])
            except StoreError as error:
                self.stats["sync_error"] += 1
                log.warning("semantic sync skipped: %s", error)
                return
            if remote < state.seen_upto:
                # The counter went back (store flushed): what this process holds is gone elsewhere.
                self._index.drop_scope(skey)
                state.seen_upto, state.own, state.missing, state.backlog = 0, set(), {}, []
            for n in [n for n, first in state.missing.items() if now - first >= MISSING_GRACE_S]:
                del state.missing[n]
            low = max(state.seen_upto + 1, remote - self.settings.max_entries_per_scope + 1)
            wanted = [n for n in range(remote, low - 1, -1) if n not in state.own]
            inline = [n for n in state.missing if n < low] + wanted[: self.settings.sync_batch]
            fetched: list[tuple[int, bytes | None]] = []
            if inline:
                try:
                    raws = await self._get_many([f"{self.namespace}:s:{{{skey}}}:{n}" for n in inline])
                except StoreError as error:
                    self.stats["sync_error"] += 1
                    log.warning("semantic sync failed: %s", error)
                    return  # nothing committed: the next lookup tries the same range again
                fetched = list(zip(inline, raws, strict=True))
            # Commit only once the records are here (a cancelled lookup leaves the state as it was).
            state.backlog.extend(wanted[self.settings.sync_batch :])
            state.seen_upto = max(state.seen_upto, remote)
            state.own = {n for n in state.own if n > state.seen_upto}
            self._apply(skey, fetched, now)
            if state.backlog and (state.loader is None or state.loader.done()):
                state.loader = self._spawn(self._load_backlog(skey, state))

    async def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for start in range(0, len(keys), _GET_MANY_CHUNK):
            out.extend(await self.store.get_many(keys[start : start + _GET_MANY_CHUNK]))
        return out

    def _apply(self, skey: str, fetched: Sequence[tuple[int, bytes | None]], now: float) -> None:
        from litellm_cache_plugin.semantic.index import decode_record

        if not fetched:
            return
        state = self._states.get(skey)
        loaded = 0
        for n, raw in fetched:
            if raw is None:
                if state is not None and len(state.missing) < _MAX_MISSING:
                    state.missing.setdefault(n, now)
                continue
            if state is not None:
                state.missing.pop(n, None)
            record = decode_record(raw)
            if record is None or record.model_id != self.embedder.model_id:
                self.stats["bad_record"] += 1
                continue
            if record.expires_at > now and self._insert(skey, record):
                loaded += 1
        self.stats["synced"] += loaded

    def _insert(self, skey: str, record: Record) -> bool:
        from litellm_cache_plugin.semantic.index import unit

        rows = self._index.scope(skey)
        if rows is not None and record.entry_key in rows:
            return False  # this process has it already (its own add, or a duplicate write)
        try:
            self._index.add(
                skey,
                record.entry_key,
                record.text,
                unit(record.vector),
                expires_at=record.expires_at,
                generation=record.generation,
                created_at=record.created_at,
                context=record.context,
            )
        except ValueError:
            self.stats["bad_record"] += 1
            return False
        return True

    async def _load_backlog(self, skey: str, state: _SyncState) -> None:
        """Load older records of a scope in the background, ``sync_batch`` at a time."""
        while state.backlog:
            batch = state.backlog[: self.settings.sync_batch]
            del state.backlog[: self.settings.sync_batch]
            try:
                raws = await self._get_many([f"{self.namespace}:s:{{{skey}}}:{n}" for n in batch])
            except StoreError as error:
                log.warning("semantic backfill stopped: %s", error)
                state.backlog.clear()
                return
            if self._states.get(skey) is not state:
                return  # the scope was reset meanwhile
            now = self.clock()
            # Absent old records have expired: not worth retrying, so they skip the missing list.
            self._apply(skey, [(n, raw) for n, raw in zip(batch, raws, strict=True) if raw is not None], now)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
