"""Owner households in the bot: what the registry import states about a household (owner, exclusive
floor area) is shown in the resident's /mydata (chat and file) and in staff's /export."""

from __future__ import annotations

import io
import json

import pytest
from openpyxl import load_workbook

from services.regions import get_region
from services.registry import import_registry, read_text_rows
from tests.helpers import body, make_staff, messages_with, tr, verify
from tests.seed import DXYC_CSV, ID_LI, ID_ZHAO, SECRET, seed_registry

# The seed registry again, now saying which households own their home and their exclusive area.
FACTS = {"DX-3-2-201": ("是", "89.5"), "YC-5-1-102": ("否", "")}


def with_owner_columns(csv_text: str) -> str:
    header, *rows = csv_text.strip().splitlines()
    lines = [header + ",业主,专有面积"]
    for row in rows:
        owner, area = FACTS.get(row.split(",")[7], ("", ""))
        lines.append(f"{row},{owner},{area}")
    return "\n".join(lines) + "\n"


@pytest.fixture
async def seeded(stack):
    await seed_registry(stack.sessions)
    async with stack.session() as s:
        report = await import_registry(s, await get_region(s, "DXYC"), read_text_rows(with_owner_columns(DXYC_CSV)),
                                       secret_key=SECRET, now=stack.clock())
    assert not report.rejected and report.households_updated == 2
    return stack


@pytest.mark.parametrize(("lang", "owner", "area"), [
    ("en", "home owner: yes", "exclusive floor area (m²): 89.50"),
    ("zh-hans", "业主: 是", "专有面积（平方米）: 89.50"),
])
async def test_mydata_shows_the_households_owner_status_and_floor_area(seeded, lang, owner, area):
    user = await seeded.client.create_user("建国", last_name="李", language_code=lang, phone_number="+8613800138002")
    await verify(user, "李建国", ID_LI, lang)
    await user.send("/mydata")
    [card] = await messages_with(user, tr(lang, "What we hold about you"))
    assert owner in body(card) and area in body(card), body(card)
    [file] = [m for m in await user.bot_messages_since_last_action() if m["document"]]
    held = json.loads(seeded.sandbox.get_file(file["document"]["file_id"]).data)
    assert (held["resident"]["owner"], held["resident"]["floor_area"]) == (True, 89.5)


async def test_mydata_of_a_renter_household_says_not_an_owner_and_no_area(seeded):
    user = await seeded.client.create_user("桂兰", language_code="en", phone_number="+8613800138003")
    await verify(user, "赵桂兰", ID_ZHAO, "en")
    await user.send("/mydata")
    [card] = await messages_with(user, "What we hold about you")
    assert "home owner: no" in body(card) and "exclusive floor area" not in body(card)


async def test_export_has_owner_and_floor_area_per_resident(seeded):
    staff = await make_staff(seeded, lang="en")
    await staff.send("/export")
    [sent] = [m for m in await staff.bot_messages_since_last_action() if m["document"]]
    data = seeded.sandbox.get_file(sent["document"]["file_id"]).data
    header, *rows = load_workbook(io.BytesIO(data), read_only=True).active.iter_rows(values_only=True)
    owner, area = header.index("home owner"), header.index("exclusive floor area (m²)")
    assert {row[0]: (row[owner], row[area]) for row in rows} == {
        "王秀英": (True, 89.5), "李建国": (True, 89.5), "赵桂兰": (False, None), "孙一": (None, None),
        "孙二": (None, None)}
