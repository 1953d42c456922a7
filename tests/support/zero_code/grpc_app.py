"""A grpc.aio server with no telemetry code: ``python grpc_app.py PORT``. Once serving, it calls itself
once through a plain ``grpc.aio.insecure_channel`` (a client as an app writes it), prints ``called``, and
serves until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
from grpc import aio

METHOD = "/zero.Echo/Say"


async def say(request: bytes, _context: aio.ServicerContext[bytes, bytes]) -> bytes:
    return b"said " + request


async def main(port: int) -> None:
    server = aio.server()
    handler = grpc.method_handlers_generic_handler(
        "zero.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await channel.unary_unary(METHOD, None, None)(b"hello")  # raw bytes both ways
    print(answer.decode(), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(grace=1)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
