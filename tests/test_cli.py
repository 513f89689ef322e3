"""The command line as a newcomer uses it: --help, bad settings, db upgrade, registry import (in this
process, through bot.cli.run_async), and the README's demo command, the installed console script,
brought up for real as its own process and chatted with through its sandbox."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from bot.i18n_tools import compile_all, problems
from bot.sandbox.client import SandboxClient
from services.i18n import LOCALES, translate
from tests.helpers import ROOT, bot_reply, cli
from tests.seed import DXYC_CSV


async def test_help_of_every_command():
    out = await cli("--help")
    assert out.returncode == 0
    for command in ("run", "demo", "db", "regions", "registry", "invites", "staff", "i18n", "tags", "checkins",
                    "policies", "polls"):
        assert command in out.stdout
        sub = await cli(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "usage: communitybot " + command in sub.stdout


async def test_bad_setting_stops_with_one_line_naming_it(tmp_path):
    out = await cli("db", "current", env={"TIMEZONE": "Mars/Olympus", "DATA_DIR": str(tmp_path)})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: TIMEZONE:")
    out = await cli("db", "current", env={"DATABASE_URL": "mysql://x", "DATA_DIR": str(tmp_path)})
    assert out.returncode == 2 and "DATABASE_URL" in out.stderr
    out = await cli("run", env={"BOT_TOKEN": "", "DATA_DIR": str(tmp_path), "TELEGRAM_API_BASE": ""})
    assert out.returncode != 0 and "BOT_TOKEN" in out.stderr


async def test_db_upgrade_regions_and_registry_import(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": "", "SECRET_KEY": "cli-test-key"}
    out = await cli("db", "upgrade", env=env)
    assert out.returncode == 0, out.stderr
    assert "database at revision" in out.stdout
    assert (await cli("regions", "demo", env=env)).returncode == 0
    regions = tmp_path / "regions.csv"
    regions.write_text("code,name,level,parent_code\n310105,长宁区,district,310000\nX,坏,planet,310000\n",
                       encoding="utf-8")
    out = await cli("regions", "import", str(regions), env={**env, "DEFAULT_LOCALE": "en"})
    assert out.returncode == 0 and "regions: 1 created, 0 updated, 1 rejected" in out.stdout
    assert "unknown level 'planet'" in out.stdout
    csv = tmp_path / "registry.csv"
    csv.write_text("\ufeff" + DXYC_CSV + "没有身份证,13800000000,123,丁香苑,1,1,1,X,否\n", encoding="utf-8")
    out = await cli("registry", "import", "--committee", "DXYC", str(csv), env={**env, "DEFAULT_LOCALE": "en"})
    assert out.returncode == 0, out.stderr
    assert "imported 5" in out.stdout and "rejected 1" in out.stdout and "line 7" in out.stdout
    out = await cli("registry", "import", "--committee", "NOPE", str(csv), env=env)
    assert out.returncode == 2 and "no committee" in out.stderr
    out = await cli("invites", "create", "--committee", "DXYC", "--household", "DX-3-2-201", "--count", "2", env=env)
    assert out.returncode == 0 and out.stdout.count("start=inv_") == 2
    out = await cli("staff", "invite", "--region", "DXYC", "--role", "committee", env=env)
    assert out.returncode == 0 and "start=staff_" in out.stdout
    tags_csv = tmp_path / "tags.csv"
    tags_csv.write_text("name,room,tag\n王秀英,3-2-201,volunteer\n李建国,3-2-201,party_member\n"
                        "无此人,9-9-999,volunteer\n王秀英,3-2-201,no_such_tag\n", encoding="utf-8")
    out = await cli("tags", "bulk", "--region", "DXYC", str(tags_csv), env={**env, "DEFAULT_LOCALE": "en"})
    assert out.returncode == 0, out.stderr
    assert "tagged 2, already tagged 0, rejected 2" in out.stdout
    assert "line 4: No such resident in your area." in out.stdout and "line 5:" in out.stdout
    out = await cli("tags", "recompute", env=env)
    assert out.returncode == 0 and "aged_70" in out.stdout


def test_catalogues_are_complete_and_compile(tmp_path, monkeypatch):
    import gettext
    import shutil

    from bot import i18n_tools

    for locale in LOCALES:
        assert problems(locale) == [], f"untranslated or fuzzy entries in {locale}"
    # compiled into a copy, never into the checkout (a test must not write into the source tree)
    shutil.copytree(i18n_tools.LOCALE_DIR, tmp_path / "locale", ignore=shutil.ignore_patterns("*.mo"))
    monkeypatch.setattr(i18n_tools, "LOCALE_DIR", tmp_path / "locale")
    written = compile_all()
    assert sorted(p.relative_to(tmp_path) for p in written) == [
        Path("locale") / loc / "LC_MESSAGES" / "messages.mo" for loc in sorted(LOCALES)]
    with (tmp_path / "locale" / "zh_Hans" / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        assert gettext.GNUTranslations(fh).gettext("What I can do") == translate("zh_Hans", "What I can do") != (
            "What I can do")


async def test_demo_command_serves_the_web_chat_and_the_bot(tmp_path):
    """The README's command as typed: the installed console script (the one CLI test in a process of
    its own: script, logging, event loop, SIGINT), then a chat through the demo's sandbox."""
    script = Path(sys.executable).with_name("communitybot")
    assert script.exists(), f"{script}: the console script that `pip install -e .` installs"
    proc = await asyncio.create_subprocess_exec(
        str(script), "demo", "--port", "0", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": ""})
    try:
        url = None
        async with asyncio.timeout(120):
            while url is None:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited early"
                if m := re.search(r"open (http://\S+) in your browser", line):
                    url = m[1]
        async with SandboxClient(url) as client:
            page = await client.request("GET", "/sandbox/api/users")
            assert page == []
            user = await client.create_user("新邻居")
            await user.send("/start")
            # the demo handles updates as tasks: wait for the answers (bot_reply), not for confirmation
            welcome = (await bot_reply(user))["text"]
            assert welcome == translate("zh_Hans", "Welcome to Community Cloud, {name}!\n"
                                        "I connect residents with their neighbourhood committee: notices from the "
                                        "committee, and daily check-ins for elderly neighbours who live alone.\n"
                                        "Send /help to see what I can do.").format(name="新邻居")
            await user.send("/lang en")
            await bot_reply(user, lambda m: "Language set to English." in m["text"])
            await user.send("/help")
            await bot_reply(user, lambda m: "/help — What I can do" in m["text"])
            # The bot's own routes are on the sandbox's port: health and metrics (and the console).
            async with client.session.get(url.rstrip("/") + "/healthz") as resp:
                health = await resp.json()
            assert health["checks"]["database"]["ok"] and "sender" in health["checks"], health
            async with client.session.get(url.rstrip("/") + "/metrics") as resp:
                assert resp.status == 200 and 'communitybot_update_seconds_count{type="message"}' in await resp.text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    if proc.returncode not in (0, 130, -signal.SIGINT):
        pytest.fail(f"demo exited with {proc.returncode}")


def test_catalogues_work_without_compiled_files(tmp_path, monkeypatch):
    """A fresh checkout has only .po files (the .mo files are not committed): they compile in memory."""
    import shutil

    from services import i18n

    for locale in LOCALES:
        target = tmp_path / locale / "LC_MESSAGES"
        target.mkdir(parents=True)
        shutil.copy(i18n.LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po", target)
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.translations.cache_clear()
    try:
        assert i18n.translate("zh_Hans", "What I can do") != "What I can do"
        assert not list(tmp_path.rglob("*.mo"))
    finally:
        i18n.translations.cache_clear()


async def test_sender_processes_share_the_configured_rate(tmp_path):
    from bot.app import Runtime
    from bot.runtime import build_sender
    from bot.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path, outbox_rate=24, outbox_senders=3)
    sender = build_sender(Runtime(settings, None, None, None, None))
    assert sender.rate == 8 and sender.per_chat_rate == 1
