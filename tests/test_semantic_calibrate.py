"""Calibration statistics. Pure, plus one CLI run. (The benchmark's constructed data set is tested in
test_semantic_bench_data.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from litellm_cache_plugin.semantic.calibrate import (
    Outcome,
    Pair,
    load_pairs,
    main,
    recommend,
    sweep,
    wilson,
)
from litellm_cache_plugin.settings import SemanticLayer


def test_wilson_interval() -> None:
    low, high = wilson(0, 300)
    assert low == 0.0 and 0.012 < high < 0.013
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10)[1] == 1.0


def test_sweep_and_recommend() -> None:
    pairs = [Pair("a", "b", True), Pair("c", "d", True), Pair("e", "f", False), Pair("g", "h", False)]
    sims = [0.95, 0.85, 0.92, 0.5]
    verdicts: list[str | None] = [None, None, "number", None]
    outcomes = sweep(pairs, sims, verdicts, grid=[0.8, 0.9])
    by = {(o.threshold, o.guard): o for o in outcomes}
    assert (by[(0.8, True)].hits, by[(0.8, True)].wrong) == (2, 0)
    assert (by[(0.8, False)].hits, by[(0.8, False)].wrong) == (2, 1)
    assert (by[(0.9, False)].hits, by[(0.9, False)].wrong) == (1, 1)
    best = recommend(outcomes, 0.0)
    assert best is not None and (best.threshold, best.guard) == (0.8, True)
    assert recommend([Outcome(0.9, True, 1, 1, 1, 1)], 0.0) is None
    assert recommend(outcomes, 0.0, strict=True) is None  # 0 of 2 is no proof of a 0% error rate


def test_load_pairs(tmp_path: Path) -> None:
    good = tmp_path / "p.jsonl"
    good.write_text('{"a": "x", "b": "y", "same": true}\n\n{"a": "x", "b": "z", "same": false}\n')
    assert load_pairs(good) == [Pair("x", "y", True), Pair("x", "z", False)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_pairs(bad)


def test_calibrate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime", reason="the [semantic] extra is not installed")
    data = tmp_path / "pairs.jsonl"
    rows = [
        {
            "a": "How far is Paris from Lyon?",
            "b": "What's the distance between Paris and Lyon?",
            "same": True,
        },
        {"a": "How far is Paris from Lyon?", "b": "How far is Paris from Lille?", "same": False},
        {"a": "Give me three tips for sleep.", "b": "Give me five tips for sleep.", "same": False},
        {"a": "What is the capital of France?", "b": "What's the capital of France?", "same": True},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    assert main([str(data), "--target", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "recommended:" in out and "threshold:" in out
    assert main([str(data), "--json", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recommended"]["wrong"] == 0
    assert main([str(tmp_path / "missing.jsonl")]) == 2


def test_settings_defaults_are_valid() -> None:
    layer = SemanticLayer()
    assert 0.5 < layer.threshold < 1 and layer.guard and layer.embedder == "builtin"
    with pytest.raises(ValueError):
        SemanticLayer(embedder="openai")
