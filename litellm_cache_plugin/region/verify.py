"""Verified semantic matches, off the request path: one background job per new near-match pair.

A request whose exact lookup missed and whose prompt is near a cached one (threshold and guard
passed) is answered upstream in verified mode; once its own answer is stored, the region hands the
pair, with that answer, to :meth:`Verifier.submit`. The job, bounded in number (``max_pending``) and
in concurrency (``max_concurrent``), never blocks nor fails a request:

0. the pair's verification lock is taken in the shared store (``policy.verify.verify_lock_key``,
   TTL ``verify_lock_ttl``: the judge's timeout plus a margin), so that replicas and workers sharing
   the backend verify one pair once: a job that finds it held by another job ends there
   (``verify_deduplicated``; that job's verdict or alias is what later requests find); a store that
   cannot be reached fails open, the job verifies without the lock (``verify_unlocked``). The lock is
   released when the job ends, however it ends (``policy.verify.after_verify_lock`` decides);
1. the pair's remembered judge verdict, if any (``policy.verify.verdict_key``), decides in every mode
   (read once the lock is held, so a verdict another replica just wrote is used, not judged again);
2. else, in ``agreement`` and ``both`` mode, the canonical entry is read for the request's tenant,
   model group, version and tags and its answer compared with the paraphrase's fresh one
   (``policy.verify.answers_agree``). Agreeing answers make the paraphrase's exact key an alias of it
   (``CacheEngine.store_alias``; counted ``agreed`` and ``verified``). Differing answers record
   nothing (``disagreed``: other wording does not prove another question); in ``both`` mode the
   judge is then asked as in ``judge`` mode;
3. in ``judge`` mode (and ``both`` after a disagreement): the judge's verdict, a call to the judge
   model group through the :class:`~litellm_cache_plugin.region.ports.Judge` port with a deadline,
   remembered for ``verdict_ttl`` seconds;
4. "same": the canonical entry is read again and, if still fresh, the paraphrase's exact key becomes
   an alias of it; "different": the paraphrase is a question of its own, made findable by meaning
   like any miss.

Any failure (judge error, timeout, unclear answer, backend error) records nothing: fail open, the
pair stays unverified and is never served. Counted in the ``semantic`` row of the stats:
``verified``, ``agreed``, ``disagreed``, ``rejected``, ``judged``, ``judge_failed``,
``verify_dropped``, ``verify_target_gone``, ``verify_deduplicated``, ``verify_unlocked``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from litellm_cache_plugin.engine import CacheEngine
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.policy.verify import (
    AliasTarget,
    Judgement,
    LockState,
    after_verify_lock,
    alias_ttl,
    answers_agree,
    decode_verdict,
    encode_alias,
    encode_verdict,
    judge_messages,
    parse_judgement,
    verdict_key,
    verify_lock_key,
    verify_lock_ttl,
)
from litellm_cache_plugin.region.context import NearMatch
from litellm_cache_plugin.region.ports import Judge
from litellm_cache_plugin.settings import SemanticVerify
from litellm_cache_plugin.store.base import StoreError

log = logging.getLogger("litellm_cache_plugin")

# (scope, prompt, exact key, TTL, earlier turns of a conversation scoped by meaning) -> made findable
# by meaning (SemanticIndex.add through the region)
AddToIndex = Callable[[str, str, str, float, tuple[tuple[str, str], ...]], Awaitable[None]]


@dataclass(frozen=True)
class VerifyJob:
    """One near-match pair to verify, with the scope of the request that found it."""

    paraphrase_key: str  # the request's own exact key (holds its own answer; becomes the alias)
    near: NearMatch
    tenant: Tenant
    model_group: str
    model_version: str
    tags: tuple[str, ...]
    index_ttl: float  # the paraphrase's own entry's backend TTL (for the index, on "different")
    settings: SemanticVerify
    # The paraphrase's fresh answer as stored (its plaintext payload), compared with the canonical
    # entry's in ``agreement`` and ``both`` mode; None in ``judge`` mode (not kept).
    answer: bytes | None = None


class Verifier:
    """The region's background verifications (one per process)."""

    def __init__(
        self, engine: CacheEngine, judge: Judge | None, settings: SemanticVerify, add_to_index: AddToIndex
    ) -> None:
        self.engine = engine
        self.judge = judge
        self.max_pending = settings.max_pending
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._pending: set[tuple[str, str]] = set()
        self._add_to_index = add_to_index
        self._owner = secrets.token_hex(8)  # this process's verifier, in its lock owners

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, job: VerifyJob) -> bool:
        """Start verifying ``job`` in the background; False when it was not started (the same pair is
        already being verified in this process, or too many are waiting)."""
        pair = (job.paraphrase_key, job.near.canonical_key)
        if pair in self._pending:
            return False
        needs_judge = job.settings.mode == "judge"
        if len(self._pending) >= self.max_pending or (needs_judge and self.judge is None):
            self.engine.stats.bump("semantic", job.model_group, "verify_dropped")
            return False
        self._pending.add(pair)
        self.engine.spawn(self._run(job, pair))
        return True

    async def _run(self, job: VerifyJob, pair: tuple[str, str]) -> None:
        try:
            async with self._slots:
                await self.verify(job)
        except Exception:  # fail open: a verification never raises into anything
            log.exception("semantic verification failed (nothing recorded)")
            self.engine.stats.bump("semantic", job.model_group, "judge_failed")
        finally:
            self._pending.discard(pair)

    async def verify(self, job: VerifyJob) -> Judgement | None:
        """Run one verification to its end (see the module docstring); returns the verdict used
        (None: nothing was decided here, the pair stays unverified or another job decides it)."""
        lock_key = verify_lock_key(self.engine.namespace, job.paraphrase_key, job.near.canonical_key)
        owner = f"{self._owner}:{secrets.token_hex(4)}"
        plan = after_verify_lock(await self._lock(lock_key, owner, verify_lock_ttl(job.settings.timeout)))
        if plan.count is not None:
            self.engine.stats.bump("semantic", job.model_group, plan.count)
        if not plan.verify:
            return None
        try:
            return await self._verify(job)
        finally:
            if plan.release:
                with contextlib.suppress(StoreError):  # else it expires with its TTL
                    await self.engine.store.release_lock(lock_key, owner)

    async def _lock(self, key: str, owner: str, ttl: float) -> LockState:
        try:
            acquired = await self.engine.store.acquire_lock(key, owner, ttl)
        except StoreError as error:
            log.warning("semantic verification lock not taken, verifying without it: %s", error)
            return "store_failed"
        return "acquired" if acquired else "held"

    async def _verify(self, job: VerifyJob) -> Judgement | None:
        group = job.model_group
        store = self.engine.store
        key = verdict_key(self.engine.namespace, job.paraphrase_key, job.near.canonical_key)
        try:
            judgement = decode_verdict(await store.get(key))
        except StoreError as error:
            log.warning("semantic verification skipped: %s", error)
            self.engine.stats.bump("semantic", group, "backend_error")
            return None
        if judgement is None and job.settings.mode in ("agreement", "both"):
            canonical = await self._canonical(job)
            if canonical is None:
                self.engine.stats.bump("semantic", group, "verify_target_gone")
                return None
            if _agree(canonical, job.answer):
                self.engine.stats.bump("semantic", group, "agreed")
                await self._alias(job, canonical)
                return "same"
            self.engine.stats.bump("semantic", group, "disagreed")
            if job.settings.mode == "agreement":
                return None  # other wording is no proof of another question: nothing recorded
        if judgement is None:
            judgement = await self._ask(job)
            if judgement is None:
                self.engine.stats.bump("semantic", group, "judge_failed")
                return None
            self.engine.stats.bump("semantic", group, "judged")
            try:
                await store.set(key, encode_verdict(judgement), job.settings.verdict_ttl)
            except StoreError as error:
                log.warning("semantic verdict not remembered: %s", error)
        if judgement == "different":
            self.engine.stats.bump("semantic", group, "rejected")
            await self._add_to_index(
                job.near.scope, job.near.prompt, job.paraphrase_key, job.index_ttl, job.near.context
            )
            return judgement
        canonical = await self._canonical(job)
        if canonical is None:
            self.engine.stats.bump("semantic", group, "verify_target_gone")
            return judgement
        await self._alias(job, canonical)
        return judgement

    async def _canonical(self, job: VerifyJob) -> Entry | None:
        """The canonical entry as the paraphrase's request would read it (its tenant, model group,
        version and tags), if fresh and with enough life left to be worth an alias."""
        found = await self.engine.lookup(
            job.near.canonical_key,
            tenant=job.tenant,
            model_group=job.model_group,
            model_version=job.model_version,
            controls=RequestControls(),
            tags=job.tags,
            record=False,
        )
        entry = found.entry if found.outcome == "HIT" else None
        if entry is None:
            return None
        if alias_ttl(entry.created_at, entry.fresh_for, entry.stale_for, self.engine.clock()) is None:
            return None
        return entry

    async def _alias(self, job: VerifyJob, canonical: Entry) -> None:
        """The paraphrase's exact key becomes an alias of ``canonical`` (counted ``verified``)."""
        ttl = alias_ttl(canonical.created_at, canonical.fresh_for, canonical.stale_for, self.engine.clock())
        if ttl is None:
            self.engine.stats.bump("semantic", job.model_group, "verify_target_gone")
            return
        target = AliasTarget(
            job.near.canonical_key, job.model_group, canonical.created_at, job.near.similarity
        )
        if await self.engine.store_alias(
            job.paraphrase_key, encode_alias(target), canonical, ttl=ttl, model_group=job.model_group
        ):
            self.engine.stats.bump("semantic", job.model_group, "verified")

    async def _ask(self, job: VerifyJob) -> Judgement | None:
        model = job.settings.judge_model
        if self.judge is None or not model:
            return None
        timeout = job.settings.timeout
        near = job.near
        messages = judge_messages(near.canonical_prompt, near.prompt, near.canonical_context, near.context)
        try:
            answer = await asyncio.wait_for(self.judge.ask(model, messages, timeout), timeout=timeout)
        except Exception as error:  # timeouts included: nothing is recorded, the pair stays unverified
            log.warning("semantic judge %s failed: %r", model, error)
            return None
        judgement = parse_judgement(answer)
        if judgement is None:
            log.warning("semantic judge %s gave no clear yes/no (nothing recorded)", model)
        return judgement


def _agree(canonical: Entry, answer: bytes | None) -> bool:
    """The canonical entry's answer and the paraphrase's fresh one agree (``answers_agree``); never
    when either cannot be read."""
    if answer is None:
        return False
    try:
        return answers_agree(orjson.loads(canonical.payload), orjson.loads(answer))
    except orjson.JSONDecodeError:
        return False
