"""The staff console in a real browser: Debian's Chromium, headless, driven by Playwright, on the stack
`demo` runs (the sandbox, the real bot polling it, and the console on the sandbox's own port).

A staff member sends /console through the sandbox and opens the link; builds a segment and watches
its count change as they type; sends a notice and watches the delivery report fill as residents
press Received; the pages are saved as screenshots (zh_Hans and en, office screen and phone) under
test-output/console/ to be looked at. Skipped where there is no Chromium, required in CI
(REQUIRE_CHROMIUM=1, see the `browser` fixture in conftest.py)."""

from __future__ import annotations

import pytest

from services.i18n import ngettext, use_locale
from tests.helpers import browser_page, console_link_from_bot, make_staff, verify, zh
from tests.seed import ID_LI, ID_WANG, ID_ZHAO, seed_registry

pytestmark = pytest.mark.parametrize("stack", [{"console": True}], indirect=True)

LIVE = 15_000  # ms a live figure may take to change (the delivery report asks every 3 s)


def expect(locator):
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(locator)


def zh_n(singular: str, plural: str, n: int, **values) -> str:
    with use_locale("zh_Hans"):
        return ngettext(singular, plural, n).format(n=n, **values)


async def test_staff_sign_in_with_the_link_the_bot_sends_and_sign_out(stack, browser):
    await seed_registry(stack.sessions)
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
        await page.goto(stack.base_url + "/console/")
        await page.get_by_role("button", name=zh("Sign out")).click()
        await expect(page.get_by_role("status")).to_have_text(zh("You are signed out."))
        await page.goto(stack.base_url + "/console/residents")
        assert page.url.startswith(stack.base_url + "/console/login")
    async with browser_page(browser, allow=("403",)) as again:  # the same link a second time: spent
        await again.goto(link)
        await expect(again.get_by_role("alert")).to_have_text(
            zh("This sign-in link was already used. Send /console to the bot for a new one."))
        await expect(again.get_by_role("heading", name=zh("Dashboard"))).to_have_count(0)


async def test_a_segment_is_counted_as_it_is_typed_and_its_mistake_marked(stack, browser):
    await seed_registry(stack.sessions)
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
        await page.get_by_role("textbox", name=zh("Name")).fill("5号楼")
        await page.get_by_role("button", name=zh("Save segment")).click()
        await expect(page.get_by_role("heading", name="5号楼")).to_be_visible()
        await expect(page.get_by_role("status")).to_have_text(zh("The segment is saved."))
        await expect(page.locator("section", has_text=zh("First residents")).get_by_role("link")).to_have_text(
            ["赵桂兰"])


async def test_a_notice_is_sent_and_its_delivery_report_fills_as_residents_press_received(stack, browser):
    await seed_registry(stack.sessions)
    residents = []
    for name, idn in (("王秀英", ID_WANG), ("李建国", ID_LI), ("赵桂兰", ID_ZHAO)):
        phone = {"王秀英": "+8613800138001", "李建国": "+8613800138002", "赵桂兰": "+8613800138003"}[name]
        user = await stack.client.create_user(name, language_code="zh-hans", phone_number=phone)
        await verify(user, name, idn)
        residents.append(user)
    staff = await make_staff(stack)
    await residents[2].block()  # 赵桂兰 has blocked the bot: she cannot be sent it
    async with browser_page(browser) as page:
        await page.goto(await console_link_from_bot(staff))
        await page.get_by_role("link", name=zh("Notices"), exact=True).click()
        await page.get_by_role("link", name=zh("New notice")).click()
        live = page.locator("#live-count")
        everyone = zh_n("Audience: {n} resident, of whom {reachable} can be reached in the bot.",
                        "Audience: {n} residents, of whom {reachable} can be reached in the bot.", 5, reachable=3)
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
