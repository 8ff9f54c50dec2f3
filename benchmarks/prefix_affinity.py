"""KV-prefix reuse with and without prefix-affinity routing, measured by the model servers themselves.

Several Ollama simulator instances (each with its own KV prefix cache of ``--slots`` sequences, like
``OLLAMA_NUM_PARALLEL`` slots) serve one model group behind a ``litellm.Router``. The workload is a few
long system prompts x many distinct short questions at temperature 0 (distinct, so the response cache
never answers), sent ``--concurrency`` at a time in a fixed shuffled order. Two runs on fresh servers:

- ``shuffle``: the Router's default ``simple-shuffle``; the plugin measures but does not route.
- ``affinity``: the plugin's prefix-affinity routing (consistent hashing with bounded loads).

For each run it prints the prompt-token reuse share the simulators report (reused / prompt tokens),
their summed ``prompt_eval_duration``, the plugin's own reuse estimate (from ``prompt_eval_count``),
and how the requests spread over the servers.

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python benchmarks/prefix_affinity.py [--slots 2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm.router import Router

import litellm_cache_plugin
from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread

MODEL_GROUP = "chat"
TOPICS = ("billing", "shipping", "warranty", "accounts", "returns", "security", "hardware", "software")


def system_prompt(topic: str) -> str:
    """A long, distinct system prompt (~150 words) for one assistant."""
    rules = " ".join(
        f"Rule {n} for {topic}: answer politely, cite the {topic} policy section {n}, never guess "
        f"amounts, and ask for the order number when the {topic} question needs one."
        for n in range(1, 6)
    )
    return f"You are the ACME {topic} assistant. Keep answers short and factual. {rules}"


def questions(topic: str, count: int) -> list[str]:
    return [
        f"Question {i} about {topic}: what happens to order {1000 + i} in case {i * 7}?" for i in range(count)
    ]


def workload(prompts: int, per_prompt: int, seed: int = 7) -> list[list[Any]]:
    requests = [
        [{"role": "system", "content": system_prompt(topic)}, {"role": "user", "content": question}]
        for topic in TOPICS[:prompts]
        for question in questions(topic, per_prompt)
    ]
    random.Random(seed).shuffle(requests)
    return requests


@dataclass
class RunResult:
    mode: str
    prompt_tokens: int
    reused_tokens: int
    prompt_eval_seconds: float
    prompt_eval_seconds_saved: float
    per_server: list[int]
    plugin_stats: dict[str, Any]
    wall_seconds: float

    @property
    def share(self) -> float:
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def model_list(servers: Sequence[SimulatorThread]) -> list[dict[str, Any]]:
    return [
        {
            "model_name": MODEL_GROUP,
            "litellm_params": {"model": "ollama_chat/llama3.2:1b", "api_base": server.url},
            "model_info": {"id": f"sim-{index}"},
        }
        for index, server in enumerate(servers)
    ]


# LiteLLM copies callbacks into these lists on first use and keeps one logger per class in them, so a
# second plugin in the same process would never be called: each run restores them.
_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


def _callback_state() -> dict[str, Any]:
    state: dict[str, Any] = {name: list(getattr(litellm, name)) for name in _CALLBACK_LISTS}
    state["cache"] = litellm.cache
    return state


def _restore_callback_state(state: dict[str, Any]) -> None:
    for name in _CALLBACK_LISTS:
        setattr(litellm, name, list(state[name]))
    litellm.cache = state["cache"]


async def run_once(
    mode: str,
    *,
    instances: int,
    slots: int,
    requests: list[list[Any]],
    concurrency: int,
    affinity_settings: dict[str, Any] | None = None,
) -> RunResult:
    config = SimulatorConfig(
        latency_ms=5, tokens_per_second=2000, prompt_tokens_per_second=2000, prefix_cache_slots=slots
    )
    servers = [SimulatorThread(config).start() for _ in range(instances)]
    saved = _callback_state()
    try:
        router = Router(model_list=model_list(servers), num_retries=2)
        plugin = litellm_cache_plugin.attach(
            {
                "layers": {
                    "prefix": {
                        "enabled": True,
                        "affinity": {**(affinity_settings or {}), "enabled": mode == "affinity"},
                    }
                }
            },
            router=router,
        )
        gate = asyncio.Semaphore(concurrency)

        async def one(messages: list[Any]) -> None:
            async with gate:
                await router.acompletion(model=MODEL_GROUP, messages=messages, temperature=0)

        started = time.perf_counter()
        await asyncio.gather(*(one(messages) for messages in requests))
        wall = time.perf_counter() - started
        # The plugin measures reuse in LiteLLM's success callbacks, which run in background tasks.
        for _ in range(100):
            row = plugin.engine.stats.snapshot().get("prefix", {}).get(MODEL_GROUP, {})
            if row.get("hit", 0) + row.get("miss", 0) >= len(requests):
                break
            await asyncio.sleep(0.05)
        stats = [server.simulator.stats() for server in servers]
        return RunResult(
            mode=mode,
            prompt_tokens=sum(s["prompt_tokens"] for s in stats),
            reused_tokens=sum(s["prompt_tokens_reused"] for s in stats),
            prompt_eval_seconds=sum(s["prompt_eval_seconds"] for s in stats),
            prompt_eval_seconds_saved=sum(s["prompt_eval_seconds_saved"] for s in stats),
            per_server=[s["requests"]["chat"] for s in stats],
            plugin_stats=plugin.engine.stats.snapshot().get("prefix", {}).get(MODEL_GROUP, {}),
            wall_seconds=wall,
        )
    finally:
        _restore_callback_state(saved)
        for server in servers:
            server.stop()


def report(results: list[RunResult], slots: int, args: argparse.Namespace) -> str:
    lines = [
        f"{args.instances} simulator instances x {slots} KV slots each; {args.prompts} system prompts x "
        f"{args.questions} questions = {args.prompts * args.questions} requests, "
        f"concurrency {args.concurrency}",
        f"{'routing':<9} {'reuse share':>11} {'prompt tok':>10} {'reused':>8} {'eval s':>7} {'saved s':>8} "
        f"{'plugin est.':>11} {'wall s':>7}  requests per server",
    ]
    for r in results:
        estimate = r.plugin_stats.get("input_tokens_saved", 0) / max(
            1, r.plugin_stats.get("prompt_tokens", 0)
        )
        lines.append(
            f"{r.mode:<9} {r.share:>11.3f} {r.prompt_tokens:>10} {r.reused_tokens:>8} "
            f"{r.prompt_eval_seconds:>7.2f} {r.prompt_eval_seconds_saved:>8.2f} {estimate:>11.3f} "
            f"{r.wall_seconds:>7.1f}  {r.per_server}"
        )
    shuffle, affinity = results
    lines.append(
        f"prompt-eval time: {shuffle.prompt_eval_seconds:.2f} s without affinity, "
        f"{affinity.prompt_eval_seconds:.2f} s with it "
        f"({shuffle.prompt_eval_seconds - affinity.prompt_eval_seconds:.2f} s less, "
        f"{1 - affinity.prompt_eval_seconds / shuffle.prompt_eval_seconds:.0%})"
    )
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4, choices=range(1, len(TOPICS) + 1))
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--slots", default="2,4", help="KV cache slots per server, comma-separated")
    parser.add_argument("--load-factor", type=float, default=None, help="layers.prefix.affinity.load_factor")
    parser.add_argument("--min-inflight-cap", type=int, default=None, help="...affinity.min_inflight_cap")
    args = parser.parse_args(argv)
    requests = workload(args.prompts, args.questions)
    affinity_settings: dict[str, Any] = {}
    if args.load_factor is not None:
        affinity_settings["load_factor"] = args.load_factor
    if args.min_inflight_cap is not None:
        affinity_settings["min_inflight_cap"] = args.min_inflight_cap
    print(f"litellm {metadata.version('litellm')}, python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    for slots in [int(s) for s in args.slots.split(",")]:
        results = [
            await run_once(
                mode,
                instances=args.instances,
                slots=slots,
                requests=requests,
                concurrency=args.concurrency,
                affinity_settings=affinity_settings,
            )
            for mode in ("shuffle", "affinity")
        ]
        print()
        print(report(results, slots, args), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
