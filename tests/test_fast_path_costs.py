"""Issue 15: what a fast-path hit no longer repeats (memos that must not change any answer)."""

from __future__ import annotations

from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from litellm_cache_plugin.integrations.fast_path.observers import observes_success as _observes_success
from litellm_cache_plugin.integrations.fast_path.pipeline import is_rate_limiter
from litellm_cache_plugin.policy.keys import Identity
from litellm_cache_plugin.region import IdentitySigner


class _Silent(CustomLogger):
    async def async_pre_call_hook(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Recorder(CustomLogger):
    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start: Any, end: Any) -> None:
        return None


class _Rewriter(CustomLogger):
    async def async_logging_hook(self, kwargs: Any, result: Any, call_type: str) -> tuple[Any, Any]:
        return kwargs, result


class _Streamer(_Recorder):
    pass


def test_only_loggers_that_can_see_a_hit_are_called() -> None:
    assert not _observes_success(_Silent())
    assert not _observes_success(CustomLogger())
    assert _observes_success(_Recorder())
    assert _observes_success(_Rewriter())
    assert _observes_success(_Streamer())  # inherited from a class that overrides it
    # Strings and plain functions are LiteLLM's own callback kinds: always kept.
    assert _observes_success("langfuse")
    assert _observes_success(lambda *args: None)
    assert not _observes_success(_Silent())  # the per-class memo gives the same answer


def test_rate_limiter_memo_is_per_class() -> None:
    assert not is_rate_limiter(_Recorder())
    assert not is_rate_limiter(_Recorder())


def test_signing_memo_returns_the_same_verifiable_token() -> None:
    signer = IdentitySigner()
    alice = Identity(api_key_hash="h1", team_id="team-a", user_id="alice")
    token = signer.sign(alice)
    assert signer.sign(alice) == token
    assert signer.verify(token) == alice
    other = IdentitySigner()
    assert other.verify(other.sign(alice)) == alice
    assert other.sign(alice) != token  # per-process secrets: a token never crosses processes
    assert signer.sign(Identity(api_key_hash="h1", team_id="team-b", user_id="alice")) != token
