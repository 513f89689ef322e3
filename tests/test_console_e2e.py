"""End to end: a staff member sends /console through the sandbox, opens the link and sees the
dashboard; the same chat's menu button opens the console as a Mini App in the sandbox's panel, with
initData the sandbox signed as Telegram does."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.helpers import console_client, dxyc_member, make_staff, texts, zh
from tests.seed import seed_registry

PUBLIC = "http://127.0.0.1:8080"  # the console's address in the links (the test client has its own)
LINK = re.compile(r"(http://\S+/console/login)#t=([\w-]+)")


@pytest.mark.parametrize("stack", [{"public_url": PUBLIC}], indirect=True)
async def test_staff_sign_in_by_the_link_from_console(stack, caplog):
    caplog.set_level(logging.DEBUG)
    await seed_registry(stack.sessions)
    staff = await make_staff(stack)
    await staff.send("/console")
    answer = await texts(staff)
    assert zh("Your sign-in link to the staff console. It works once, for {minutes} minutes; do not forward it.\n"
              "{url}").split("{minutes}")[0] in answer
    found = LINK.search(answer)
    assert found and found.group(1) == PUBLIC + "/console/login"
    token = found.group(2)
    async with console_client(stack.runtime) as browser:
        page = await browser.get(urlsplit(found.group(1)).path)  # the fragment stays in the browser
        assert page.status == 200
        signed_in = await browser.post("/console/login", data={"token": token})  # as the page's script does
        html = await signed_in.text()
        assert signed_in.status == 200 and str(signed_in.url).endswith("/console/")
        assert zh("Dashboard") in html and "张书记" in html and "丁香迎春居委会" in html
        reused = await browser.post("/console/login", data={"token": token}, allow_redirects=False)
        assert reused.status == 403
    assert token not in caplog.text  # not in the bot's logs, the sandbox's or the console's


@pytest.mark.parametrize("stack", [{"public_url": PUBLIC}], indirect=True)
async def test_the_menu_button_opens_the_console_as_a_mini_app(stack):
    await seed_registry(stack.sessions)
    staff = await make_staff(stack)
    await staff.send("/console")
    assert zh("Inside Telegram, the menu button of this chat opens the console too.") in await texts(staff)
    button = stack.sandbox.get_menu_button(staff.id)
    assert button["type"] == "web_app" and button["web_app"]["url"] == PUBLIC + "/console/app"
    async with aiohttp.ClientSession(stack.base_url) as http:
        panel = await (await http.get(f"/sandbox/webapp/{staff.id}")).text()
        launch = await (await http.get(f"/sandbox/api/users/{staff.id}/web_app")).json()
    assert "<iframe" in panel and "/console/app#tgWebAppData=" in panel
    assert launch["url"].startswith(PUBLIC + "/console/app#tgWebAppData=")
    init_data = parse_qs(urlsplit(launch["url"]).fragment)["tgWebAppData"][0]  # what the page's script reads
    assert init_data == launch["init_data"]
    async with console_client(stack.runtime) as mini_app:
        signed_in = await mini_app.post("/console/app", data={"init_data": init_data})
        assert signed_in.status == 200 and zh("Dashboard") in await signed_in.text()


async def test_console_is_for_staff_only(stack):
    resident = await dxyc_member(stack, "王秀英", lang="zh-hans")
    await resident.send("/console")
    answer = await texts(resident)
    assert zh("This command is for committee staff only.") in answer and "/console/login" not in answer
    assert stack.sandbox.get_menu_button(resident.id)["type"] != "web_app"
