"""Quality benchmark of the semantic layer: every labelled set, per trap kind, with Wilson 95%
intervals, the layer's defaults side by side with plain-cosine baselines.

    python benchmarks/semantic/run.py [--label NAME] [--latency 1000,10000,100000] [--no-write]

In process: each lookup goes through the real ``SemanticIndex`` (vector index + near-miss guard) on a
``MemoryStore`` with precomputed MiniLM vectors; no proxy and no LiteLLM are involved, so the numbers
are the layer's decisions, not the end-to-end path. Writes ``results/semantic/<label>/report.md`` and
``results.json``. Needs the ``[semantic]`` and ``[bench]`` extras (fow-cache is in ``[bench]``).

Sets and what may be tuned on them (see ``datasets.py`` and ``README.md`` here):

- ``constructed (tuning folds)`` — the only data the guard and the threshold may be tuned on;
- ``constructed (held-out folds)`` — the same generator, other intents; scored only;
- ``fow-cache`` — test only;
- ``handwritten`` — held out: written once, before the guard changed, never tuned on;
- ``independent`` — held out: written in session 12 by a separate author who saw neither the layer's
  code nor any other set, in ten domains no other set has; never tuned on.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.semantic.datasets import KINDS, SAME_KINDS, LabelledSet, load_sets
from benchmarks.semantic.evaluate import (
    Setting,
    ceiling_rows,
    check_consistency,
    cross_validate,
    evaluate_set,
    rule_costs,
    sweep_rows,
)

ROOT = Path(__file__).resolve().parents[2]
BASELINES = (0.90, 0.95)
IN_PROCESS = (
    "In process: every lookup goes through the real SemanticIndex (vector index + near-miss guard) on a "
    "MemoryStore, with precomputed MiniLM vectors (int8 ONNX, the built-in embedder); no proxy and no "
    "LiteLLM are involved."
)


def cached_vectors(
    model_key: str, texts: Sequence[str], embed: Callable[[list[str]], Any], *, batch: int = 64
) -> dict[str, Any]:
    """``{text: float32 vector}`` for ``texts``, embedding only those not in the on-disk cache of
    ``model_key`` (``$XDG_CACHE_HOME/lcp-semantic-bench``, by text hash) with ``embed(chunk)``."""
    import numpy as np

    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lcp-semantic-bench"
    cache_file = cache_dir / (hashlib.sha256(model_key.encode()).hexdigest()[:16] + ".npz")
    cached: dict[str, Any] = {}
    if cache_file.exists():
        with np.load(cache_file) as stored:
            cached = {key: stored[key] for key in stored.files}

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    unique = sorted(set(texts))
    missing = [t for t in unique if digest(t) not in cached]
    for start in range(0, len(missing), batch):
        chunk = missing[start : start + batch]
        for text, vector in zip(chunk, embed(chunk), strict=True):
            cached[digest(text)] = np.asarray(vector, dtype=np.float32)
    if missing:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, **cached)
    return {t: cached[digest(t)] for t in unique}


async def score_settings(
    data: LabelledSet, vectors: Mapping[str, Any], settings: Sequence[Setting]
) -> dict[str, dict[str, Any]]:
    """Every setting's scores on one set, by label, each with its index-vs-pairwise check."""
    rows: dict[str, dict[str, Any]] = {}
    for setting in settings:
        scored = await evaluate_set(data, vectors, setting)
        decisions = scored.pop("decisions")
        scored["index_vs_pairwise_mismatches"] = check_consistency(data, vectors, setting, decisions)
        rows[setting.label] = scored
    return rows


def _embed_all(texts: Sequence[str], threads: int) -> dict[str, Any]:
    """Unit vectors of ``texts`` with the built-in embedder, cached on disk by text hash."""
    from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder
    from litellm_cache_plugin.semantic.index import unit

    embedder = OnnxMiniLMEmbedder(threads=threads)
    return cached_vectors(
        embedder.model_id, texts, lambda chunk: [unit(v) for v in embedder.embed_sync(chunk)]
    )


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from litellm_cache_plugin.settings import SemanticLayer

    defaults = SemanticLayer()
    sets = [s for s in load_sets() if not args.sets or any(w in s.name for w in args.sets)]
    texts = [t for s in sets for i in s.items for t in (i.cached, i.asked)] + [
        u for s in sets for u in s.unrelated
    ]
    started = time.perf_counter()
    vectors = _embed_all(texts, args.threads)
    embed_s = time.perf_counter() - started
    settings = [
        Setting(f"layer defaults (cosine >= {defaults.threshold:.2f} + guard)", defaults.threshold, True)
    ]
    settings += [Setting(f"cosine >= {t:.2f}, no guard", t, False) for t in BASELINES]
    report: dict[str, Any] = {
        "label": args.label,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(
            _git("status", "--porcelain", "--", "litellm_cache_plugin/semantic", "benchmarks/semantic")
        ),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "how": IN_PROCESS,
        "defaults": {
            "threshold": defaults.threshold,
            "guard": defaults.guard,
            "candidates": defaults.candidates,
        },
        "embedding_s": embed_s,
        "texts": len(vectors),
        "sets": {},
    }
    for data in sets:
        rows = await score_settings(data, vectors, settings)
        report["sets"][data.name] = {
            "role": data.role,
            "note": data.note,
            "items": len(data.items),
            "intents": len({i.intent for i in data.items}),
            "rows": rows,
            "rules": rule_costs(data, vectors, defaults.threshold),
            "sweep": sweep_rows(data, vectors),
            "ceiling": ceiling_rows(data, vectors),
        }
    constructed = [i for s in sets if s.name.startswith("constructed") for i in s.items]
    if constructed:
        report["cross_validation"] = cross_validate(constructed, vectors)
    if args.latency:
        from benchmarks.semantic.latency import latency

        prompts = sorted({i.asked for s in sets for i in s.items})
        report["latency"] = await latency(prompts, args.latency, args.threads, args.queries)
    return report


# --- report -----------------------------------------------------------------------------------------


def _fmt(r: dict[str, Any] | None) -> str:
    if r is None or not r["n"]:
        return "-"
    return f"{100 * r['rate']:.1f}% [{100 * r['low']:.1f}-{100 * r['high']:.1f}] ({r['k']}/{r['n']})"


def markdown(report: dict[str, Any]) -> str:
    d = report["defaults"]
    lines = [
        f"# Semantic layer quality: `{report['label']}`",
        "",
        f"Commit `{report['commit']}`{' (with uncommitted changes)' if report['dirty'] else ''}, "
        f"{report['date']}, {report['machine']}. Defaults: threshold {d['threshold']:.2f}, guard "
        f"{'on' if d['guard'] else 'off'}, {d['candidates']} candidates.",
        "",
        report["how"],
        "",
        "Rates are k/n with Wilson 95% intervals. *Served* = share of should-serve prompts (paraphrases and "
        "near repeats) answered from their cached prompt; *traps answered wrongly* = share of traps served; "
        "*unrelated* = prompts with no counterpart, looked up in one scope holding every cached prompt "
        "of the set; *cross-intent* = every prompt of an intent looked up in a scope holding the cached "
        "prompts of all other intents (any hit is wrong).",
        "",
        "## Summary",
        "",
        "| set (role) | setting | served | traps answered wrongly | unrelated answered "
        "| cross-intent answered |",
        "|---|---|---|---|---|---|",
    ]
    for name, data in report["sets"].items():
        for label, row in data["rows"].items():
            lines.append(
                f"| {name} ({data['role']}) | {label} | {_fmt(row['served'])} | {_fmt(row['traps_wrong'])} | "
                f"{_fmt(row.get('unrelated_wrong'))} | {_fmt(row.get('cross_intent_wrong'))} |"
            )
    lines += ["", "## Per kind", ""]
    for name, data in report["sets"].items():
        labels = list(data["rows"])
        lines += [
            f"### {name} ({data['role']}, {data['intents']} intents, {data['items']} pairs)",
            "",
            data["note"],
            "",
            "| kind | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        kinds = [k for k in (*SAME_KINDS, *KINDS) if k in data["rows"][labels[0]]["kinds"]]
        for kind in kinds:
            verb = "served" if kind in SAME_KINDS else "answered wrongly"
            cells = [_fmt(data["rows"][label]["kinds"][kind]) for label in labels]
            lines.append(f"| {kind} ({verb}) | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Refusals by guard rule",
        "",
        f"Pairs at or above the default threshold ({d['threshold']:.2f}). *should-serve refused*: true "
        "paraphrases the rule refuses as the first rule that fires (what the layer reports) / whenever it "
        "fires; *traps refused*: traps it refuses first / traps no other rule refuses (served without it).",
        "",
    ]
    for name, data in report["sets"].items():
        lines += [
            f"### {name}",
            "",
            "| rule | should-serve refused (first / fires) | traps refused (first / only this rule) |",
            "|---|---|---|",
        ]
        for rule, c in data["rules"].items():
            lines.append(
                f"| {rule} | {c['same_first']} / {c['same_fires']} | {c['traps_first']} / {c['traps_only']} |"
            )
        lines.append("")
    lines += [
        "## What the embedder allows, chosen in hindsight (a bound, not a setting)",
        "",
        "Per set, every threshold from 0.50 to 0.99 scored on that set's own pairs: the most should-serve "
        "pairs served with at most 1% of its traps answered wrongly, with the guard and without (plain "
        "cosine), and the traps answered wrongly at the highest threshold that serves 60% (issue 16's "
        "target). Chosen on the very pairs it is scored on, so no setting can do better with this "
        "embedder and this guard (cross-intent and unrelated matches, not counted here, only add wrong "
        "answers); on the held-out sets it is read, never used to choose.",
        "",
        "| set (role) | plain: most served at <= 1% traps | plain: traps at 60% served "
        "| guard: most served at <= 1% traps | guard: traps at 60% served |",
        "|---|---|---|---|---|",
    ]
    for name, data in report["sets"].items():
        cells = []
        for side in ("plain", "guard"):
            c = data["ceiling"][side]
            best, at_60 = c["best_at_target"], c["at_60"]
            cells.append("none" if best is None else f"{_fmt(best['served'])} at {best['threshold']:.2f}")
            cells.append(
                "60% never reached"
                if at_60 is None
                else f"{_fmt(at_60['wrong'])} at {at_60['threshold']:.2f}"
            )
        lines.append(f"| {name} ({data['role']}) | " + " | ".join(cells) + " |")
    lines.append("")
    cv = report.get("cross_validation")
    if cv:
        lines += [
            "## Cross-validation of the threshold (constructed set, 5 folds by intent)",
            "",
            f"For each fold: the threshold with the most served pairs whose traps-wrong rate is <= "
            f"{100 * cv['target']:.0f}% on the other four folds (guard on), scored on the fold.",
            "",
            "| fold | threshold picked | served | traps answered wrongly |",
            "|---|---|---|---|",
        ]
        for f in cv["folds"]:
            lines.append(
                f"| {f['fold']} | {f['threshold']:.2f} | {_fmt(f['served'])} | {_fmt(f['traps_wrong'])} |"
            )
        lines += [f"| pooled | | {_fmt(cv['served'])} | {_fmt(cv['traps_wrong'])} |", ""]
    if report.get("latency"):
        lines += ["## Lookup latency (one scope, query embedding included)", ""]
        lines += ["| entries | p50 ms | p99 ms | planted neighbours found |", "|---|---|---|---|"]
        for row in report["latency"]:
            lines.append(
                f"| {row['entries']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                f"{row['planted_found']}/{row['planted']} |"
            )
        lines.append("")
    mismatches = sum(
        row["index_vs_pairwise_mismatches"]
        for data in report["sets"].values()
        for row in data["rows"].values()
    )
    lines += [
        f"Index decisions that differ from the pairwise rule used by the sweeps: {mismatches}. "
        f"Embedded {report['texts']} texts in {report['embedding_s']:.1f} s "
        "(cached on disk after the first run).",
        "",
    ]
    return "\n".join(lines)


def write_report(out: Path, text: str, report: Any) -> None:
    """``out/report.md`` (the Markdown ``text``) and ``out/results.json`` (``report``): the layout of
    every semantic benchmark's results (this one's and ``conversations.py``'s)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten: {out / 'report.md'}, {out / 'results.json'}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/semantic/run.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--label", default=None, help="results/semantic/<label>/ (default: date and commit)")
    parser.add_argument("--out", default=str(ROOT / "results" / "semantic"), help="results directory")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads for embedding")
    parser.add_argument("--sets", nargs="*", help="only sets whose name contains one of these words")
    parser.add_argument("--latency", default="", help="entries per scope for latency runs, e.g. 1000,100000")
    parser.add_argument("--queries", type=int, default=200, help="lookups per latency run")
    args = parser.parse_args(argv)
    args.latency = [int(s) for s in args.latency.split(",") if s]
    if args.label is None:
        args.label = f"{dt.date.today().isoformat()}-{_git('rev-parse', '--short', 'HEAD')}"
    report = asyncio.run(run(args))
    text = markdown(report)
    print(json.dumps(report, indent=1) if args.json else text)
    if not args.no_write:
        write_report(Path(args.out) / args.label, text, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
