"""The staff console in a real browser: Debian's Chromium, headless, driven by Playwright, on the stack
`demo` runs (the sandbox, the real bot polling it, and the console on the sandbox's own port).

A staff member sends /console through the sandbox and opens the link; builds a segment and watches
its count change as they type; sends a notice and watches the delivery report fill as residents
press Received; the pages are saved as screenshots (zh_Hans and en, office screen and phone) under
test-output/console/ to be looked at. Skipped where there is no Chromium, required in CI
(REQUIRE_CHROMIUM=1, see the `browser` fixture in conftest.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.checkin_jobs import checkin_tick
from services.i18n import ngettext, use_locale
from services.models import Alert, AlertOutcome, AlertStatus
from tests.harness import running_stack
from tests.helpers import (
    DESK,
    PHONE,
    PacedClock,
    browser_page,
    console_link_from_bot,
    make_staff,
    screenshot,
    verify,
    zh,
)
from tests.seed import ID_LI, ID_WANG, ID_ZHAO, seed_registry

LIVE = 15_000  # ms a live figure may take to change (the delivery report asks every 3 s, the board's stream too)
PINNED = datetime(2026, 11, 28, 1, 59, tzinfo=UTC)  # 09:59 in Shanghai, Saturday 2026-11-28
PHONES = {"王秀英": "+8613800138001", "李建国": "+8613800138002", "赵桂兰": "+8613800138003"}
IDS = {"王秀英": ID_WANG, "李建国": ID_LI, "赵桂兰": ID_ZHAO}


@pytest.fixture
async def desk(tmp_path):
    """What `demo` runs (the console on the sandbox's port), on a clock at 09:59 Shanghai time moving at
    the wall clock's pace (a check-in at 10:00 is due in a minute); nothing in the database yet."""
    async with running_stack(tmp_path, console=True, clock=PacedClock(PINNED)) as s:
        yield s


@pytest.fixture
async def stack(desk):
    """The same with the tests' registry (tests/seed.py: two committees, a few residents each)."""
    await seed_registry(desk.sessions, now=PINNED - timedelta(days=3))
    return desk


async def resident(stack, name: str, lang: str = "zh-hans"):
    """A sandbox user who joins through the bot as the registry's ``name`` (phone and ID number)."""
    user = await stack.client.create_user(name, language_code=lang, phone_number=PHONES[name])
    await verify(user, name, IDS[name], lang)
    return user


def expect(locator):
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(locator)


def zh_n(singular: str, plural: str, n: int, **values) -> str:
    with use_locale("zh_Hans"):
        return ngettext(singular, plural, n).format(n=n, **values)


async def test_staff_sign_in_with_the_link_the_bot_sends_and_sign_out(stack, browser):
    staff = await make_staff(stack)
    link = await console_link_from_bot(staff)
    assert link.startswith(stack.base_url + "/console/login#t=")  # the console is on the sandbox's port
    async with browser_page(browser) as page:
        await page.goto(link)
        await expect(page.get_by_role("heading", name=zh("Dashboard"))).to_be_visible()
        assert page.url == stack.base_url + "/console/"  # the token left the address bar
        await expect(page.locator(".who-name")).to_have_text("张书记")
        await expect(page.locator("[data-figure=residents]")).to_have_text("5")
        cookie, = [c for c in await page.context.cookies() if c["name"] == "cc_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/console"
        await page.go_back()
        assert "#t=" not in page.url  # nor in the history (the sign-in page gave its place to the dashboard)
        await page.goto(await console_link_from_bot(staff))  # a second link while signed in: sent on, token dropped
        await expect(page.get_by_role("heading", name=zh("Dashboard"))).to_be_visible()
        await page.wait_for_function("() => !location.hash")
        assert page.url == stack.base_url + "/console/"
        await page.get_by_role("button", name=zh("Sign out")).click()
        await expect(page.get_by_role("status")).to_have_text(zh("You are signed out."))
        await page.goto(stack.base_url + "/console/residents")
        assert page.url.startswith(stack.base_url + "/console/login")
    async with browser_page(browser, allow=("403",)) as again:  # the same link a second time: spent
        await again.goto(link)
        await expect(again.get_by_role("alert")).to_have_text(
            zh("This sign-in link was already used. Send /console to the bot for a new one."))
        await expect(again.get_by_role("heading", name=zh("Dashboard"))).to_have_count(0)
        # A new link opened in this very tab (only the fragment changes: no page load) signs in too.
        await again.goto(await console_link_from_bot(staff))
        await expect(again.get_by_role("heading", name=zh("Dashboard"))).to_be_visible()


async def test_a_segment_is_counted_as_it_is_typed_and_its_mistake_marked(stack, browser):
    staff = await make_staff(stack)
    async with browser_page(browser) as page:
        await page.goto(await console_link_from_bot(staff))
        await page.get_by_role("link", name=zh("Segments"), exact=True).click()
        editor = page.get_by_role("textbox", name=zh("Expression"))
        live = page.locator("#live-count")
        await editor.press_sequentially('building == ', delay=20)
        await expect(live).to_have_class("live live-error")  # "==" with nothing after it
        await expect(page.locator("#live-echo mark")).to_be_visible()
        await editor.press_sequentially('"3"', delay=20)
        await expect(live).to_have_text(zh_n("{n} resident matches.", "{n} residents match.", 2))
        await expect(page.locator("#live-echo")).to_be_hidden()
        await editor.press("Backspace")
        await editor.press("Backspace")
        await editor.press_sequentially('5"', delay=20)
        await expect(live).to_have_text(zh_n("{n} resident matches.", "{n} residents match.", 1))
        await page.get_by_role("textbox", name=zh("Segment name")).fill("5号楼")
        await page.get_by_role("button", name=zh("Save segment")).click()
        await expect(page.get_by_role("heading", name="5号楼")).to_be_visible()
        await expect(page.get_by_role("status")).to_have_text(zh("The segment is saved."))
        await expect(page.locator("section", has_text=zh("First residents")).get_by_role("link")).to_have_text(
            ["赵桂兰"])


async def test_a_notice_is_sent_and_its_delivery_report_fills_as_residents_press_received(stack, browser):
    residents = [await resident(stack, name) for name in ("王秀英", "李建国", "赵桂兰")]
    staff = await make_staff(stack)
    await residents[2].block()  # 赵桂兰 has blocked the bot: she cannot be sent it, and the preview knows
    await stack.settled()
    async with browser_page(browser) as page:
        await page.goto(await console_link_from_bot(staff))
        await page.get_by_role("link", name=zh("Notices"), exact=True).click()
        await page.get_by_role("link", name=zh("New notice")).click()
        live = page.locator("#live-count")
        everyone = zh_n("Audience: {n} resident, of whom {reachable} can be reached in the bot.",
                        "Audience: {n} residents, of whom {reachable} can be reached in the bot.", 5, reachable=2)
        await expect(live).to_have_text(everyone)
        await page.get_by_role("radio", name=zh("Residents with any of these tags:")).check()
        await expect(live).not_to_have_text(everyone)  # no tag chosen yet
        await page.get_by_role("radio", name=zh("Everyone in my area")).check()
        await expect(live).to_have_text(everyone)
        await page.get_by_role("textbox", name=zh("Text")).fill("周二9点到12点停水，请提前储水。")
        await page.get_by_role("button", name=zh("Preview")).click()
        await expect(page.locator(".notice-text")).to_have_text("周二9点到12点停水，请提前储水。")
        await page.get_by_role("button", name=zh("Send now")).click()
        await expect(page.get_by_role("status")).to_have_text(zh("The notice is on its way."))
        report = page.locator("[data-poll]")
        figure = lambda key: page.locator(f"[data-field={key}]")  # noqa: E731
        await expect(figure("sent")).to_have_text("2", timeout=LIVE)
        await expect(figure("unreachable")).to_have_text("1", timeout=LIVE)
        await expect(figure("received")).to_have_text("0")
        await page.reload()  # the report opened once every message has gone: it still fills
        await expect(figure("sent")).to_have_text("2")
        await page.evaluate("() => { window.stillTheSamePage = true; }")
        for pressed, user in enumerate(residents[:2], start=1):
            message = await user.wait_for_message(lambda m: "停水" in (m["text"] or ""))
            await user.callback(message["message_id"],
                                message["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
            await expect(figure("received")).to_have_text(str(pressed), timeout=LIVE)
        assert await page.evaluate("() => window.stillTheSamePage === true")  # filled in, never reloaded
        await expect(report).to_be_visible()
        await page.reload()
        unreached = page.locator("section", has_text=zh("Who has not received it")).locator("tbody tr")
        await expect(unreached).to_have_count(1)
        await expect(unreached).to_contain_text("赵桂兰")


async def test_the_preview_of_a_notice_nobody_can_receive_in_the_bot_says_so(stack, browser):
    staff = await make_staff(stack)  # nobody of the registry has joined the bot yet
    async with browser_page(browser) as page:
        await page.goto(await console_link_from_bot(staff))
        await page.goto(stack.base_url + "/console/notices/new")
        await page.get_by_role("textbox", name=zh("Text")).fill("周五9点到11点停电。")
        await page.get_by_role("button", name=zh("Preview")).click()
        await expect(page.get_by_role("alert")).to_contain_text(zh(
            "Nobody in this audience can be reached in the bot: sent now, the notice would reach no one. "
            "Use the call list to phone them."))
        await page.get_by_role("link", name=zh("📞 Call list: %(n)s not reachable in the bot") % {"n": 5}).click()
        await expect(page.locator("main tbody tr")).to_have_count(5)


async def test_an_alert_arriving_while_the_board_is_open_appears_and_is_taken_and_closed_there(stack, browser):
    elder = await resident(stack, "赵桂兰")
    staff = await make_staff(stack)
    await staff.send("/checkin_enrol 5-1-102 10:00")
    await elder.wait_for_message()  # told she is enrolled
    async with browser_page(browser) as page:
        await page.goto(await console_link_from_bot(staff))
        await page.get_by_role("link", name=zh("Check-ins"), exact=True).click()
        await expect(page.get_by_role("heading", name=zh("Check-ins"))).to_contain_text("丁香迎春居委会")
        await expect(page.locator("[data-live-status]")).to_have_text(zh("Live"))
        open_alerts = page.locator("[data-figure=open-alerts]")
        await expect(open_alerts).to_have_text("0")
        await page.evaluate("() => { window.stillTheSamePage = true; }")
        stack.clock.advance(timedelta(minutes=1))
        assert (await checkin_tick(stack.runtime, stack.clock())).opened == 1  # 10:00: she is asked
        await elder.wait_for_message(lambda m: zh("🆘 I need help") in str(m["reply_markup"]))
        await expect(page.locator("[data-section]", has_text="赵桂兰")).to_be_visible(timeout=LIVE)
        await elder.press(zh("🆘 I need help"))
        await expect(open_alerts).to_have_text("1", timeout=LIVE)  # arrived by itself
        card = page.locator(".alert-card", has_text="赵桂兰")
        await expect(card).to_be_visible()
        assert await page.evaluate("() => window.stillTheSamePage === true")
        await card.get_by_role("button", name=zh("🙋 I'm on it")).click()
        await expect(card).to_contain_text("张书记")  # taken, by whom
        await expect(card.get_by_role("button", name=zh("🙋 I'm on it"))).to_have_count(0)
        await card.get_by_role("button", name=zh("✅ Safe")).click()
        await expect(open_alerts).to_have_text("0")
        await expect(page.get_by_text(zh("No open alerts."))).to_be_visible()
    async with stack.session() as s:
        alert = await s.scalar(select(Alert))
    assert alert.status == AlertStatus.resolved and alert.outcome == AlertOutcome.safe


# --- screenshots: every main page, zh_Hans and en, office screen and phone --------------------------

async def demo_desk(stack):
    """The demo's committee as staff find it on a working morning: its registry and the sample
    programmes, a verified resident enrolled in check-ins who has just asked for help, a segment, a
    notice, a poll, a topic and a registry file imported with one bad row."""
    from bot.demo import load_sample_policies
    from services import notices as ns
    from services import registry_imports as ri
    from services import segments as seg
    from services.accounts import resolve_actor
    from services.checkins import enrol_resident
    from services.demo import demo_resident, seed_demo
    from services.discussions.topics import TopicDraft, create_topic
    from services.models import Account, Resident
    from services.polls.ballots import PollDraft, create_poll
    from services.regions import get_region

    async with stack.session() as s:
        await seed_demo(s, secret_key=stack.settings.secret_key, now=PINNED - timedelta(days=3))
        await s.commit()
        await load_sample_policies(s, PINNED - timedelta(days=3))
        phone, name, last4 = await demo_resident(s, stack.settings.secret_key)
    elder = await stack.client.create_user(name, language_code="zh-hans", phone_number=phone)
    await verify(elder, name, last4)
    staff = await make_staff(stack)
    now = stack.clock()
    async with stack.session() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == staff.id))
        actor = await resolve_actor(s, account, language_code="zh-hans", default_locale="zh_Hans")
        resident_ = await s.scalar(select(Resident).join(Account, Account.resident_id == Resident.id)
                                   .where(Account.telegram_id == elder.id))
        await enrol_resident(s, resident_, now=now, cfg=stack.dp["checkin_config"], minute=10 * 60)
        await seg.save_segment(s, actor, "独居老人", "独居 且 年龄 >= 70", now)
        await ns.create_notice(s, actor, text="周二9点到12点3号楼停水，请提前储水。",
                               aud=await ns.audience(s, actor, "committee", None), now=now)
        committee = await get_region(s, "DXYC")
        await create_poll(s, actor, committee, PollDraft(question="小区东门是否加装电动车充电桩？",
                                                         options=["同意", "不同意", "弃权"],
                                                         closes_at=now + timedelta(days=7)),
                          now=now, cfg=stack.dp["poll_config"])
        topic = TopicDraft(title="垃圾分类投放点调整", body="拟将3号楼投放点移至北侧，请大家提意见。")
        await create_topic(s, actor, topic, now=now, cfg=stack.dp["discussion_config"])
        upload = await ri.start_import(s, actor, committee.id, "新入住.csv", flag_missing=False, now=now,
                                       locale="zh_Hans")
        await s.commit()
    path = stack.settings.data_dir / "新入住.csv"
    path.write_text("姓名,手机,小区,楼号,单元,室\n钱一,13800138101,丁香苑,7,1,101\n"
                    "钱二,12345,丁香苑,7,1,102\n", "utf-8")  # line 3: not a phone number
    await ri.run_import(stack.sessions, upload.id, path, secret_key=stack.settings.secret_key, clock=stack.clock)
    stack.clock.advance(timedelta(minutes=1))
    await checkin_tick(stack.runtime, stack.clock())
    await elder.wait_for_message(lambda m: zh("🆘 I need help") in str(m["reply_markup"]))
    await elder.press(zh("🆘 I need help"))
    return staff


# Nothing but a table's own scroller may be wider than the screen: the innermost elements that reach
# past its right edge (tag, class and text), none when the page fits.
OVERFLOWING = """() => {
  if (document.documentElement.scrollWidth <= window.innerWidth + 1) return [];
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest(".table-wrap")) continue;
    const box = el.getBoundingClientRect();
    const past = (e) => e.getBoundingClientRect().right > window.innerWidth + 1;
    if (past(el) && ![...el.children].some(past)) {
      out.push(el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + " " + Math.round(box.right) + "px "
               + (el.textContent || "").trim().slice(0, 30));
    }
  }
  return out.slice(0, 8);
}"""
DETAILS = ("/residents/", "/segments/", "/notices/", "/polls/", "/topics/", "/checkins/alerts/", "/policies/",
           "/registry/imports/")


async def main_pages(page, base: str) -> list[str]:
    """The console's menu, and the first item of each list that has items to open."""
    paths = [href for href in await page.locator("#nav a").evaluate_all("els => els.map(a => a.getAttribute('href'))")]
    found = []
    for path in paths:
        await page.goto(base + path)
        for prefix in DETAILS:
            link = page.locator(f"main a[href^='/console{prefix}']").filter(has_not_text="XLSX")
            hrefs = [h for h in await link.evaluate_all("els => els.map(a => a.getAttribute('href'))")
                     if re.fullmatch(r"\d+|[a-z_]+", h.removeprefix("/console" + prefix).split("?")[0])
                     and not h.endswith(("/new", "/take-up"))]
            if hrefs and hrefs[0] not in found and not any(f.startswith("/console" + prefix) for f in found):
                found.append(hrefs[0])
    return paths + found + ["/console/notices/new", "/console/polls/new", "/console/policies/take-up"]


def slug(path: str) -> str:
    """The screenshot's name: ``/console/polls/7`` → ``polls-item`` (the same name from run to run)."""
    parts = ["item" if part.isdigit() else part for part in path.removeprefix("/console").strip("/").split("/")]
    return "-".join(part for part in parts if part) or "dashboard"


@pytest.mark.parametrize("locale", ["zh_Hans", "en"])
async def test_screenshots_of_the_main_pages_on_an_office_screen_and_a_phone(desk, browser, locale):
    stack = desk
    staff = await demo_desk(stack)
    for size, viewport in (("desk", DESK), ("phone", PHONE)):
        async with browser_page(browser, locale=locale, viewport=viewport) as page:
            await page.goto(stack.base_url + "/console/login")
            await screenshot(page, f"{locale}-{size}-login")
            await page.goto(await console_link_from_bot(staff))
            await page.wait_for_url(stack.base_url + "/console/")
            if locale == "en":
                await page.get_by_role("button", name="English").click()
                await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
            wide, leaked = [], []
            for path in await main_pages(page, stack.base_url):
                response = await page.goto(stack.base_url + path)
                assert response.status == 200, path
                await screenshot(page, f"{locale}-{size}-{slug(path)}")
                if overflow := await page.evaluate(OVERFLOWING):
                    wide.append((path, overflow))
                if "None" in await page.locator("main").inner_text():  # a Python None shown as a word
                    leaked.append(path)
            assert not wide, f"wider than the {size} screen: {wide}"
            assert not leaked, leaked


async def test_an_xlsx_with_one_bad_row_imports_the_others_and_names_the_bad_one(stack, browser, tmp_path):
    from openpyxl import Workbook

    staff = await make_staff(stack)
    book = Workbook()
    sheet = book.active
    sheet.append(["姓名", "手机", "小区", "楼号", "单元", "室"])
    sheet.append(["钱一", "13800138101", "丁香苑", "7", "1", "101"])
    sheet.append(["钱二", "12345", "丁香苑", "7", "1", "102"])  # line 3: not a phone number
    sheet.append(["钱三", "13800138103", "丁香苑", "7", "1", "103"])
    upload = tmp_path / "7号楼.xlsx"
    book.save(upload)
    async with browser_page(browser) as page:
        await page.goto(await console_link_from_bot(staff))
        await page.get_by_role("link", name=zh("Registry import"), exact=True).click()
        await page.get_by_role("checkbox").uncheck()  # a few new rows, not the whole registry
        await page.locator("input[type=file]").set_input_files(upload)
        await page.get_by_role("button", name=zh("Import"), exact=True).click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("7号楼.xlsx")
        await expect(page.locator("[data-import-label]")).to_have_text(zh("done"), timeout=LIVE)
        await expect(page.locator("[data-import-bar]")).to_have_attribute("value", "100")
        await expect(page.locator("[data-figure=imported]")).to_have_text("2")
        await expect(page.locator("[data-figure=rejected]")).to_have_text("1")
        bad = page.locator("tr[data-line]")
        await expect(bad).to_have_count(1)
        await expect(bad).to_have_attribute("data-line", "3")
        await expect(bad).to_contain_text(zh("the phone number is not a valid phone number"))
        await page.get_by_role("link", name=zh("Residents"), exact=True).click()
        await page.get_by_role("searchbox", name=zh("Name or room")).fill("钱")
        await page.get_by_role("button", name=zh("Search")).click()
        await expect(page.locator("main table tbody tr")).to_have_count(2)
        await expect(page.locator("main table tbody")).to_contain_text("钱一")
        await expect(page.locator("main table tbody")).to_contain_text("钱三")
