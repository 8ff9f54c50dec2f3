"""CPU per Redis command of the ``redis://`` backend's client, in-process, against raw asyncio streams.

    python -m benchmarks.redis_command_cost [--redis-port 6379] [--calls 2000] [--rounds 12]

One hit reads its entry with one command (``RedisStore.get_with_counters_or_lock``, an EVALSHA); this
times that call as the store makes it, then the same EVALSHA with the two redis-py layers a hit does
not need taken away one at a time: the per-command socket timeout (an ``asyncio.wait_for`` around
every send, which creates a task on Python 3.11) and ``Redis.execute_command`` (retry, observability
and event hooks) replaced by the connection's own send and read. A plain GET on raw asyncio streams
is the floor: what the kernel and the loop cost. Sequential calls on uvloop; CPU time of this process
(the server's is not counted); the cases interleaved, medians of rounds. The store does not use the
two stripped variants: they are the bound on what redis-py costs a hit, not a mode.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from litellm_cache_plugin.store.redis import RedisStore

Call = Callable[[], Awaitable[Any]]


async def command_of(store: RedisStore, call: Call) -> tuple[Any, ...]:
    """The arguments of the one command ``call`` makes the store send, recorded on its client, so that
    the stripped variants send the very same command (script digest, prefixed keys)."""
    client = store.client
    sent: list[tuple[Any, ...]] = []
    execute = client.execute_command

    async def recording(*args: Any, **options: Any) -> Any:
        sent.append(args)
        return await execute(*args, **options)

    client.execute_command = recording  # type: ignore[method-assign]
    try:
        await call()
    finally:
        del client.execute_command  # the class's method again
    if len(sent) != 1:
        raise RuntimeError(f"expected one command, the store sent {len(sent)}: {sent}")
    return sent[0]


async def cpu_us(call: Call, calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


async def measure(port: int, calls: int, rounds: int) -> dict[str, list[float]]:
    prefix = f"lcp-redis-cost-{uuid.uuid4().hex[:8]}:"
    url = f"redis://127.0.0.1:{port}/0?prefix={prefix}"
    store = RedisStore.from_url(url)
    untimed = RedisStore.from_url(url)
    untimed.client.connection_pool.connection_kwargs["socket_timeout"] = None
    entry, lock = prefix + "entry", prefix + "lock"
    await store.set("entry", b"x" * 1500, 60)

    def store_read(target: RedisStore) -> Call:
        return lambda: target.get_with_counters_or_lock("entry", ["c1", "c2"], "lock", "owner", 30)

    await store_read(store)()  # loads the script on the server: the recorded call is then one EVALSHA
    command = await command_of(store, store_read(store))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw_get = f"*2\r\n$3\r\nGET\r\n${len(entry)}\r\n{entry}\r\n".encode()

    def on_connection(target: RedisStore) -> Call:
        pool = target.client.connection_pool

        async def call() -> Any:
            connection = await pool.get_connection()
            try:
                await connection.send_command(*command)
                return await connection.read_response()
            finally:
                await pool.release(connection)

        return call

    async def raw() -> None:
        writer.write(raw_get)
        header = await reader.readline()
        await reader.readexactly(int(header[1:]) + 2)

    cases: dict[str, Call] = {
        "store.get_with_counters_or_lock (as a hit makes it)": store_read(store),
        "  same, no per-command socket timeout": store_read(untimed),
        "  EVALSHA on the connection, socket timeout kept": on_connection(store),
        "  EVALSHA on the connection, no socket timeout": on_connection(untimed),
        "raw asyncio streams GET (the floor)": raw,
    }
    try:
        for call in cases.values():  # connections, script cache
            for _ in range(200):
                await call()
        found: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, call in cases.items():
                found[name].append(await cpu_us(call, calls))
        return found
    finally:
        writer.close()
        await store.client.delete(entry, lock)
        await store.close()
        await untimed.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args(argv)
    try:
        import uvloop

        run: Callable[[Any], Any] = uvloop.run
    except ImportError:
        run = asyncio.run
    found = run(measure(args.redis_port, args.calls, args.rounds))
    print(f"CPU per call, us (median and min of {args.rounds} rounds of {args.calls} sequential calls)")
    for name, values in found.items():
        print(f"  {statistics.median(values):7.1f}  {min(values):7.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
