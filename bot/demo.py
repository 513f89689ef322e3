"""``communitybot demo``: the sandbox and the bot in one process, with a seeded demo committee."""

from __future__ import annotations

import logging
import socket
from datetime import datetime
from pathlib import Path

from aiohttp import web

from bot.app import open_runtime, run_polling
from bot.runtime import add_background_jobs
from bot.sandbox import Sandbox, create_sandbox_app
from bot.settings import Settings
from bot.web import add_bot_routes
from services import i18n

log = logging.getLogger("bot.demo")
DEMO_TOKEN = "42:sandbox"


def _page_translations(language_code: str):
    """The sandbox pages speak the language of the simulated user (or of the browser)."""
    return i18n.translations(i18n.normalize_locale(language_code))


async def demo_hints(rt, now: datetime) -> list[str]:
    """Seed if empty, and make fresh staff invites so a visitor can act as a cadre."""
    from services.demo import seed_demo
    from services.models import StaffRole
    from services.regions import get_region
    from services.verification import create_staff_invite

    async with rt.sessions() as session:
        seeded = await seed_demo(session, secret_key=rt.settings.ensure_secret_key(), now=now)
        hints = ["demo database seeded (丁香迎春居委会, 枫林居委会)" if seeded else "demo database already present"]
        for code, role in (("DXYC", StaffRole.committee), ("310104003", StaffRole.street)):
            region = await get_region(session, code)
            invite = await create_staff_invite(session, region=region, role=role,
                                               secret_key=rt.settings.ensure_secret_key(), ttl=rt.settings.invite_ttl,
                                               now=now)
            hints.append(f"to act as {role.value} staff of {region.name}, send:  /start staff_{invite}")
        await session.commit()
        from services.demo import demo_resident

        hints.append(await load_sample_policies(session, now))
        sample = await demo_resident(session, rt.settings.ensure_secret_key())
        if sample:
            hints.append("a demo resident to verify as: create a sandbox user with phone {}, send /start, "
                         "share the contact, then answer {} and {}".format(*sample))
    return hints


SAMPLE_POLICIES = Path(__file__).resolve().parent.parent / "policies" / "sample"


async def load_sample_policies(session, now: datetime) -> str:
    """The repository's sample programmes when the catalogue is empty, so the console's policies page and
    /benefits have some to show."""
    from sqlalchemy import func, select

    from services import policies as pol
    from services.models import Policy

    if await session.scalar(select(func.count()).select_from(Policy)):
        return "policies already loaded"
    if not SAMPLE_POLICIES.is_dir():  # an installed package has no sample folder
        return "no sample policies here: load a catalogue with  communitybot policies load DIR"
    try:
        result = await pol.load_catalogue(session, SAMPLE_POLICIES, now)
    except pol.CatalogueError as err:
        await session.rollback()
        return f"sample policies not loaded: {len(err.problems)} problem(s), see communitybot policies load"
    await session.commit()
    return f"sample policies loaded ({len(result.created) + len(result.updated)} programmes from policies/sample)"


async def run_demo(settings: Settings, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """The sandbox and the bot's own routes (/healthz, /metrics, /console) on one port."""
    # Users are kept with the demo's data: a restarted demo never gives a new visitor the Telegram
    # id (and so the account and verified resident) of an earlier one.
    sandbox = Sandbox(data_dir=settings.data_dir)
    app = create_sandbox_app(sandbox, translate=i18n.translations(i18n.DEFAULT_LOCALE),
                             translations_for=_page_translations)
    # The socket first: the bot must know the sandbox's port (with --port 0, the one the system
    # picks) before its runtime opens, and the bot's routes must be on the app before it starts.
    sock = socket.create_server((host, port), reuse_port=False)
    bound = sock.getsockname()[1]
    settings.telegram_api_base = f"http://127.0.0.1:{bound}"
    settings.public_url = settings.public_url or settings.telegram_api_base  # /console links: this sandbox
    runner: web.AppRunner | None = None
    try:
        async with open_runtime(settings, token=DEMO_TOKEN) as rt:
            add_bot_routes(app, rt)
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            hints = await demo_hints(rt, rt.clock())
            add_background_jobs(rt)
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            print(f"\nCommunity Cloud demo is running: open http://{shown}:{bound}/ in your browser", flush=True)
            print(f"  health: http://{shown}:{bound}/healthz   metrics: http://{shown}:{bound}/metrics", flush=True)
            for hint in hints:
                print(f"  {hint}", flush=True)
            try:
                await run_polling(rt)
            finally:
                # Before the runtime closes: the routes use its engine.
                await runner.cleanup()
                runner = None
    finally:
        if runner is not None:
            await runner.cleanup()
        sock.close()
