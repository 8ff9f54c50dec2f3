"""Reading the simulator's requests (Ollama's JSON bodies, options, durations) and writing its JSON.

Every malformed request raises :class:`ApiError`, which the app turns into Ollama's error shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

_DEFAULT_KEEP_ALIVE = timedelta(minutes=5)
_PIECE_RE = re.compile(r"\s*\S+")
_USER_TURN_RE = re.compile(r"^#{2,3} *User:", re.MULTILINE | re.IGNORECASE)
_NEXT_TURN_RE = re.compile(r"^#{2,3} *\w+:", re.MULTILINE)
_JSON_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_T = TypeVar("_T", bound=BaseModel)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class GenOptions:
    temperature: float | None
    seed: int | None
    num_predict: int | None
    stop: tuple[str, ...]
    raw: dict[str, Any]


def created_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json", charset="utf-8"
    )


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def json_tokens(value: Any) -> list[str]:
    """Tokens of a JSON value: words and punctuation, roughly as a BPE tokenizer splits JSON."""
    return _JSON_TOKEN_RE.findall(canonical_json(value))


def split_pieces(text: str) -> list[str]:
    return _PIECE_RE.findall(text)


def nanoseconds(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def require_model(body: dict[str, Any]) -> str:
    name = body.get("model") or body.get("name")  # "name" is the older spelling, still sent by LiteLLM
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "model is required")
    return name


def stream_flag(body: dict[str, Any]) -> bool:
    # Ollama streams unless told otherwise.
    value = body.get("stream")
    return True if value is None else bool(value)


def parse_options(body: dict[str, Any]) -> GenOptions:
    raw = body.get("options")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ApiError(400, "options must be a JSON object")

    def number(key: str) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError(400, f'option "{key}" must be of type number')
        return float(value)

    temperature = number("temperature")
    seed_value = number("seed")
    # llama.cpp reads a negative seed as "pick one at random".
    seed = int(seed_value) if seed_value is not None and seed_value >= 0 else None
    predict_value = number("num_predict")
    # -1 (unbounded) and -2 (fill the context) fall back to the natural answer length.
    num_predict = int(predict_value) if predict_value is not None and predict_value > 0 else None
    stop_raw = raw.get("stop")
    if stop_raw is None:
        stop: tuple[str, ...] = ()
    elif isinstance(stop_raw, str):
        stop = (stop_raw,) if stop_raw else ()
    elif isinstance(stop_raw, list) and all(isinstance(s, str) for s in stop_raw):
        stop = tuple(s for s in stop_raw if s)
    else:
        raise ApiError(400, 'option "stop" must be a string or a list of strings')
    return GenOptions(temperature=temperature, seed=seed, num_predict=num_predict, stop=stop, raw=raw)


def last_user_turn(prompt: str) -> str:
    """The user's words in a chat flattened into one prompt (LiteLLM renders "### User:" sections)."""
    parts = _USER_TURN_RE.split(prompt)
    if len(parts) == 1:
        return prompt
    return _NEXT_TURN_RE.split(parts[-1], maxsplit=1)[0]


def parse_keep_alive(value: Any) -> timedelta | None:
    """Seconds or a Go duration string; ``None`` means keep forever."""
    if value is None:
        return _DEFAULT_KEEP_ALIVE
    seconds: float
    if isinstance(value, bool):
        return _DEFAULT_KEEP_ALIVE
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        negative = text.startswith("-")
        text = text.lstrip("+-")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ApiError(400, f"invalid keep_alive duration {value!r}") from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
        if negative:
            seconds = -seconds
    else:
        raise ApiError(400, "keep_alive must be a number or a duration string")
    return None if seconds < 0 else timedelta(seconds=seconds)


def validated(model: type[_T], body: dict[str, Any]) -> _T:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise ApiError(400, details) from None
