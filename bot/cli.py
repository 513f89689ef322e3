"""The ``communitybot`` command line (also ``python -m bot``). Heavy imports happen per command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]


def _settings(**overrides):
    from bot.settings import load_settings

    return load_settings(**overrides)


async def _engine(settings, migrate: bool = True):
    from bot.db import create_engine
    from bot.migrate import upgrade

    engine = create_engine(settings.db_url, data_keys=settings.data_keys())
    if migrate:
        await upgrade(engine, settings=settings)
    return engine


MAX_LISTED = 200


def print_rejected(lines: list) -> None:
    """An import's rejected lines, the first MAX_LISTED of them, then how many more there were."""
    for line in lines[:MAX_LISTED]:
        print(f"  {line}")
    if len(lines) > MAX_LISTED:
        print(f"  … and {len(lines) - MAX_LISTED} more rejected")


@contextlib.asynccontextmanager
async def cli_session(settings) -> AsyncIterator:
    """One session on the (upgraded) database for a CLI command; the engine is closed after."""
    from bot.db import session_factory

    engine = await _engine(settings)
    try:
        async with session_factory(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def region_admin(region):
    """The actor a CLI command acts as: the administrator of ``region`` (its whole subtree)."""
    from services.models import StaffRole
    from services.scope import Actor, StaffGrant

    return Actor(staff=[StaffGrant(0, StaffRole.admin, region.id, region.path, region.code, region.name)])


def settle_heap() -> None:
    """What a started bot made (modules, models, schemas, routers, templates: some 300,000 objects) lives
    as long as the process: leave it out of the garbage collector's full passes. Each such pass walked
    all of it and held the event loop for 0.1–0.6 s (every update in hand waited); ``gc.freeze`` is
    CPython's way to say so. Call it once the runtime is built, before serving."""
    gc.collect()
    gc.freeze()


async def cmd_run(args: argparse.Namespace) -> int:
    import os

    from bot.app import open_runtime, run_polling
    from bot.runtime import add_background_jobs

    if args.workers < 1:
        print("run: --workers must be at least 1", file=sys.stderr)
        return 2
    if not args.webhook:
        if args.workers > 1 or args.no_set_webhook:
            print("run: --workers and --no-set-webhook need --webhook (Telegram allows one long-polling "
                  "consumer per bot)", file=sys.stderr)
            return 2
        async with open_runtime(args.settings) as rt:
            add_background_jobs(rt)
            settle_heap()
            await run_polling(rt)
        return 0
    if not args.settings.public_url:
        print("configuration error: PUBLIC_URL: required by run --webhook (the public https:// base URL "
              "Telegram reaches)", file=sys.stderr)
        return 2
    if args.workers > 1:
        from bot.workers import supervise

        return await supervise(args.settings, args.workers, verbose=args.verbose,
                               set_webhook=not args.no_set_webhook)
    from bot.web import run_webhook

    def ready(address: str) -> None:
        print(f"webhook worker pid {os.getpid()} serving {address}", flush=True)

    async with open_runtime(args.settings) as rt:
        add_background_jobs(rt)
        settle_heap()
        await run_webhook(rt, call_set_webhook=not args.no_set_webhook, ready=ready)
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    await run_demo(args.settings, host=args.host, port=args.port)
    return 0


async def cmd_db(args: argparse.Namespace) -> int:
    from bot.migrate import current_revision, downgrade, head_revision, upgrade

    settings = args.settings
    engine = await _engine(settings, migrate=False)
    try:
        if args.action == "upgrade":
            await upgrade(engine, args.revision or "head", settings=settings)
        elif args.action == "downgrade":
            await downgrade(engine, args.revision or "-1", settings=settings)
        print(f"database at revision {await current_revision(engine)} (head {head_revision()})")
    finally:
        await engine.dispose()
    return 0


async def cmd_regions(args: argparse.Namespace) -> int:
    from services.regions import ensure_demo_regions, parse_regions_csv, upsert_regions

    async with cli_session(args.settings) as session:
        if args.action == "demo":
            await ensure_demo_regions(session)
            await session.commit()
            print("demo regions ready")
            return 0
        with open(args.file, encoding="utf-8-sig") as fh:
            rows, errors = parse_regions_csv(fh.read())
        result = await upsert_regions(session, rows)
        await session.commit()
        print_rejected(errors + result.errors)
        print(f"regions: {result.created} created, {result.updated} updated, "
              f"{len(errors) + len(result.errors)} rejected")
        return 0


async def cmd_i18n(args: argparse.Namespace) -> int:
    from bot.i18n_tools import main as i18n_main

    return i18n_main(args.action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="communitybot", description="Community Cloud bot")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the bot (long polling, or webhook workers) against Telegram",
                       description="Run the bot with long polling, or with --webhook serve Telegram's webhook "
                                   "on WEB_HOST:WEB_PORT (PUBLIC_URL/webhook, secret WEBHOOK_SECRET). Needs "
                                   "BOT_TOKEN; set TELEGRAM_API_BASE for a local Bot API server. Upgrades the "
                                   "database first. README: \"Running for a district\".")
    p.add_argument("--webhook", action="store_true",
                   help="receive updates by webhook (calls setWebhook with PUBLIC_URL) instead of polling")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="with --webhook: N worker processes on one port (SO_REUSEPORT), restarted if they die")
    p.add_argument("--no-set-webhook", action="store_true",
                   help="with --webhook: serve, but leave setWebhook to another instance")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="sandbox + bot in one process, with a seeded demo committee",
                       description="Start the local Bot API sandbox and the bot in one process; seed a "
                                   "demo committee if the database is empty; print the web chat URL.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="web chat / sandbox port (default 8080)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("db", help="database migrations", description="Alembic migrations.")
    p.add_argument("action", choices=["upgrade", "downgrade", "current"])
    p.add_argument("revision", nargs="?", help="target revision (default: head / one step down)")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("regions", help="region hierarchy",
                       description="`regions import FILE` (CSV: code,name,level,parent_code[,name_en]) "
                                   "or `regions demo` (the built-in demo hierarchy).")
    p.add_argument("action", choices=["import", "demo"])
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_regions)

    p = sub.add_parser("i18n", help="translation catalogues",
                       description="update: extract and merge; compile: write .mo files; "
                                   "missing: list untranslated entries.")
    p.add_argument("action", choices=["update", "compile", "missing"])
    p.set_defaults(func=cmd_i18n)

    from bot import cli_checkins, cli_policies, cli_polls, cli_registry, cli_tags

    cli_registry.add_commands(sub)
    cli_checkins.add_commands(sub)
    cli_tags.add_commands(sub)
    cli_policies.add_commands(sub)
    cli_polls.add_commands(sub)
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line, with the settings it runs under (``args.settings``; not for
    ``i18n``). A bad setting stops here (SystemExit 2, one line on stderr), before anything else."""
    args = build_parser().parse_args(argv)
    if args.command != "i18n":
        args.settings = _settings()  # first, so that a bad value is the only thing printed
    return args


async def execute(args: argparse.Namespace) -> int:
    """Run a parsed command in the running event loop, in the deployment's default language; its
    exit code."""
    if args.command == "regions" and args.action == "import" and not args.file:
        print("regions import: FILE is required", file=sys.stderr)
        return 2
    if args.command == "i18n":
        return await args.func(args) or 0
    from services.i18n import use_locale

    with use_locale(args.settings.default_locale):
        return await args.func(args) or 0


async def run_async(argv: list[str] | None = None) -> int:
    """The command line inside a running event loop (callable again and again in one process, as
    the tests do); ``main`` is this plus the process's logging and event loop. Errors of the
    command line itself raise SystemExit as argparse does."""
    return await execute(parse(argv))


def main(argv: list[str] | None = None) -> int:
    """The ``communitybot`` console script: logging, one event loop, the exit code."""
    args = parse(argv)
    from bot.logs import configure_logging

    configure_logging(args.verbose, getattr(getattr(args, "settings", None), "log_format", "text"))  # LOG_FORMAT
    try:
        return asyncio.run(execute(args))
    except KeyboardInterrupt:
        return 130
