#!/usr/bin/env python3
"""A real WebSocket client (python3-websockets): connects to ADDR:PORT for
URL, sends each message and checks it comes back. Usage:
ws_echo.py URL ADDR PORT MESSAGE..."""
import asyncio, sys
import websockets

async def main(url, addr, port, msgs):
    async with websockets.connect(url, host=addr, port=port, open_timeout=10) as ws:
        for m in msgs:
            await ws.send(m)
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != m:
                print(f"sent {m!r}, got {got!r}")
                sys.exit(1)
    print("echoed", len(msgs))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]))
