"""Run the sandbox for a browser demo: ``python -m bot.sandbox --port 8081``.

Point the bot at it with ``TelegramAPIServer.from_base("http://127.0.0.1:8081")`` and any token
of the form ``<digits>:<anything>``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from bot.sandbox.app import create_sandbox_app
from bot.sandbox.state import Sandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--rate-limit-global", type=float, default=None, help="messages per second")
    parser.add_argument("--rate-limit-per-chat", type=float, default=None, help="messages per second")
    parser.add_argument("--data-dir", default=None, help="keep the simulated users here across restarts")
    args = parser.parse_args(argv)
    sandbox = Sandbox(
        rate_limit_global=args.rate_limit_global,
        rate_limit_per_chat=args.rate_limit_per_chat,
        data_dir=args.data_dir,
    )
    web.run_app(create_sandbox_app(sandbox), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
