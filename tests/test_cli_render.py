"""``litellm-cache stats``: the backend line says what each figure covers."""

from __future__ import annotations

from litellm_cache_plugin.cli import render


def test_backend_figures_are_printed_with_what_they_cover() -> None:
    document = {
        "scope": "worker",
        "layers": {"exact": {"llama3.2": {"hit": 3, "miss": 1, "hit_ratio": 0.75}}},
        "backend": {
            "backend": "redis",
            "entries": 12,
            "bytes": 1048576,
            "evictions": 0,
            "expirations": 7,
            "coverage": {
                "entries": "cache",
                "bytes": "server",
                "evictions": "server",
                "expirations": "server",
            },
        },
    }
    text = render(document)
    assert "backend redis: entries=12 (cache) bytes=1048576 (server) evictions=0 (server)" in text
    assert "expirations=7 (server)" in text
    assert "server: the whole server" in text


def test_backend_without_coverage_prints_the_bare_figures() -> None:
    document = {"layers": {}, "backend": {"backend": "custom", "entries": 1, "bytes": None}}
    text = render(document)
    assert "backend custom: entries=1 bytes=None evictions=None expirations=None" in text
    assert "the whole server" not in text


def test_the_answering_worker_is_named() -> None:
    document = {"scope": "worker", "worker": {"pid": 4242, "workers": 2}, "layers": {}, "backend": None}
    assert "scope: worker pid 4242 of 2 (each proxy worker counts its own requests)" in render(document)
