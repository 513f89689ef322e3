"""The console's registry import over HTTP: a CSV or XLSX uploaded (streamed with the CSRF header, or
posted as a plain form), imported in the background with its progress readable by any request, every
row either imported or rejected with its line and reason (shown, and as XLSX), a file refused as a
whole, the upload deleted afterwards; another committee (404), no CSRF token (403, nothing kept)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from io import BytesIO

import pytest
from aiohttp import FormData
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from services import registry_imports as ri
from services.models import AuditLog, RegistryImport, Resident, ResidentStatus
from tests.helpers import console_app, console_login, csrf_of, make_world, zh

GOOD_AND_BAD = ("姓名,手机,楼号,单元,室,性别\n"
                "张新来,13800138888,7,1,101,男\n"
                "李错号,12345,7,1,102,女\n"  # line 3: the phone is not a phone number
                "\n"
                "王无名,,7,1,103,X\n"  # line 5: the gender is neither
                "赵新户,13800138889,7,2,201,女\n")


@pytest.fixture
async def world(engine):
    from bot.db import session_factory

    async with session_factory(engine)() as s:
        return await make_world(s)


@pytest.fixture
async def app(engine, tmp_path, world):
    async with console_app(engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


def upload_form(csrf: str, committee: int, content: bytes, filename: str, *, flag_missing: bool = False,
                with_field: bool = True) -> FormData:
    form = FormData()
    if with_field:
        form.add_field("csrf", csrf)
    form.add_field("committee", str(committee))
    if flag_missing:
        form.add_field("flag_missing", "1")
    form.add_field("file", BytesIO(content), filename=filename, content_type="application/octet-stream")
    return form


async def finished(app, location: str) -> dict:
    """Follow the import's progress until it is over (a guard, not a timing)."""
    for _ in range(400):
        answer = await (await app.client.get(location + "/progress.json")).json()
        if answer["final"]:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError("the import did not finish")


async def test_a_csv_is_imported_in_the_background_and_every_bad_row_is_reported(app, world):
    dxyc = world.regions["DXYC"].id
    csrf = csrf_of(await (await app.client.get("/console/registry")).text())
    response = await app.client.post("/console/registry/import", headers={"X-CSRF-Token": csrf},
                                     data=upload_form(csrf, dxyc, GOOD_AND_BAD.encode(), "登记.csv",
                                                      with_field=False), allow_redirects=False)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    answer = await finished(app, location)
    assert answer["status"] == "done" and answer["total"] == 4 and answer["percent"] == 100
    assert answer["counts"]["imported"] == 2 and answer["counts"]["rejected"] == 2
    page = await (await app.client.get(location)).text()
    assert 'data-line="3"' in page and 'data-line="5"' in page
    assert zh("the phone number is not a valid phone number") in page
    assert zh("gender must be 男/女 or M/F") in page
    assert "13800138888" not in page  # no cell of the file in the report
    async with app.sessions() as s:
        names = set(await s.scalars(select(Resident.name).where(Resident.committee_id == dxyc)))
        assert {"张新来", "赵新户"} <= names and "李错号" not in names
        row = await s.scalar(select(RegistryImport))
        assert row.report["counts"]["imported"] + row.report["counts"]["rejected"] == row.total_rows == 4
        # make_world's residents stay: the box "whole registry" was not ticked
        assert await s.scalar(select(func.count(Resident.id)).where(
            Resident.committee_id == dxyc, Resident.status == ResidentStatus.moved_out)) == 0
        assert {"registry.upload", "registry.import"} <= set(await s.scalars(select(AuditLog.action)))
    sheet = await app.client.get(location + "/rejected.xlsx")
    rows = list(load_workbook(BytesIO(await sheet.read())).active.iter_rows(values_only=True))
    assert [r[0] for r in rows[2:]] == [3, 5]
    assert not list((app.rt.settings.data_dir / "imports").iterdir())  # the file is gone


async def test_an_xlsx_posted_as_a_plain_form_flags_who_is_missing(app, world):
    dxyc = world.regions["DXYC"].id
    wb = Workbook()
    ws = wb.active
    ws.append(["姓名", "手机", "楼号", "单元", "室"])
    ws.append(["王秀英", "+8613800138001", "3", "2", "201"])  # already in the registry: unchanged or updated
    ws.append(["新居民", "13900139000", "9", "1", "101"])
    ws.append(["", "", "", "", ""])
    ws.append(["坏号码", "abc", "9", "1", "102"])
    buf = BytesIO()
    wb.save(buf)
    csrf = csrf_of(await (await app.client.get("/console/registry")).text())
    response = await app.client.post("/console/registry/import", data=upload_form(
        csrf, dxyc, buf.getvalue(), "registry.xlsx", flag_missing=True), allow_redirects=False)
    assert response.status == 303, await response.text()
    answer = await finished(app, response.headers["Location"])
    counts = answer["counts"]
    assert answer["total"] == 3 and counts["rejected"] == 1 and counts["imported"] == 1
    assert counts["imported"] + counts["updated"] + counts["unchanged"] + counts["rejected"] == 3
    assert counts["flagged"] == 4  # DXYC's other four residents are not in the file
    async with app.sessions() as s:
        wang = await s.get(Resident, world.residents["wang"].id)
        li = await s.get(Resident, world.residents["li"].id)
        assert (wang.status, li.status) == (ResidentStatus.active, ResidentStatus.moved_out)


async def test_a_file_without_a_usable_header_fails_with_the_reason(app, world):
    csrf = csrf_of(await (await app.client.get("/console/registry")).text())
    response = await app.client.post("/console/registry/import", headers={"X-CSRF-Token": csrf}, data=upload_form(
        csrf, world.regions["DXYC"].id, b"foo,bar\n1,2\n", "x.csv", with_field=False), allow_redirects=False)
    answer = await finished(app, response.headers["Location"])
    assert answer["status"] == "failed"
    page = await (await app.client.get(response.headers["Location"])).text()
    assert zh("the header row must name at least: name, and one of phone, id_number, household or room") in page
    broken = await app.client.post("/console/registry/import", headers={"X-CSRF-Token": csrf}, data=upload_form(
        csrf, world.regions["DXYC"].id, b"PK\x03\x04 not a workbook", "y.xlsx", with_field=False),
        allow_redirects=False)
    assert (await finished(app, broken.headers["Location"]))["status"] == "failed"


async def test_refusals_keep_nothing(app, world):
    csrf = csrf_of(await (await app.client.get("/console/registry")).text())
    content = GOOD_AND_BAD.encode()
    no_token = await app.client.post("/console/registry/import", data=upload_form(
        "", world.regions["DXYC"].id, content, "a.csv"))
    wrong_header = await app.client.post("/console/registry/import", headers={"X-CSRF-Token": "forged"},
                                         data=upload_form(csrf, world.regions["DXYC"].id, content, "a.csv",
                                                          with_field=False))
    assert (no_token.status, wrong_header.status) == (403, 403)
    other = await app.client.post("/console/registry/import", headers={"X-CSRF-Token": csrf}, data=upload_form(
        csrf, world.regions["FLSQ"].id, content, "a.csv", with_field=False))
    assert other.status == 404
    not_a_sheet = await app.client.post("/console/registry/import", headers={"X-CSRF-Token": csrf},
                                        data=upload_form(csrf, world.regions["DXYC"].id, content, "a.pdf",
                                                         with_field=False))
    assert not_a_sheet.status == 400 and zh("Upload a CSV (UTF-8) or XLSX file.") in await not_a_sheet.text()
    async with app.sessions() as s:
        assert await s.scalar(select(func.count(RegistryImport.id))) == 0
        assert await s.scalar(select(func.count(Resident.id)).where(Resident.name == "张新来")) == 0
    folder = app.rt.settings.data_dir / "imports"
    assert not list(folder.glob("*")) if folder.exists() else True


async def test_another_committees_import_is_404_and_a_silent_one_shows_as_interrupted(engine, tmp_path, world):
    async with console_app(engine, tmp_path) as a:
        await console_login(a, world.flsq_staff.account.id)
        csrf = csrf_of(await (await a.client.get("/console/registry")).text())
        response = await a.client.post("/console/registry/import", headers={"X-CSRF-Token": csrf},
                                       data=upload_form(csrf, world.regions["FLSQ"].id, GOOD_AND_BAD.encode(),
                                                        "f.csv", with_field=False), allow_redirects=False)
        location = response.headers["Location"]
        await finished(a, location)
    async with console_app(engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        for suffix in ("", "/progress.json", "/rejected.xlsx"):
            assert (await a.client.get(location + suffix)).status == 404
        assert "f.csv" not in await (await a.client.get("/console/registry")).text()
        async with a.sessions() as s:
            s.add(RegistryImport(committee_id=world.regions["DXYC"].id, filename="stuck.csv", flag_missing=False,
                                 locale="zh_Hans", status=ri.RUNNING, total_rows=10, done_rows=3,
                                 created_at=a.clock(), updated_at=a.clock()))
            await s.commit()
            stuck = await s.scalar(select(RegistryImport.id).where(RegistryImport.filename == "stuck.csv"))
        assert (await (await a.client.get(f"/console/registry/imports/{stuck}/progress.json")).json())["status"] \
            == "running"
        csrf = csrf_of(await (await a.client.get("/console/registry")).text())
        busy = await a.client.post("/console/registry/import", headers={"X-CSRF-Token": csrf}, data=upload_form(
            csrf, world.regions["DXYC"].id, GOOD_AND_BAD.encode(), "b.csv", with_field=False))
        assert busy.status == 400
        a.clock.advance(ri.STALE_AFTER + timedelta(seconds=1))
        answer = await (await a.client.get(f"/console/registry/imports/{stuck}/progress.json")).json()
        assert answer["status"] == "interrupted" and answer["final"]


async def test_a_file_larger_than_a_form_may_be_is_streamed_with_the_csrf_header(app, world):
    """The web app reads a plain form up to 1 MiB; import.js posts with the header and the file streams."""
    lines = ["姓名,手机,楼号,单元,室,备注"]
    lines += [f"居民{i:05d},,{10 + i % 20},1,{100 + i},{'很长的备注' * 40}" for i in range(3000)]
    content = ("\n".join(lines) + "\n").encode()
    assert len(content) > 1024 * 1024
    csrf = csrf_of(await (await app.client.get("/console/registry")).text())
    as_form = await app.client.post("/console/registry/import", data=upload_form(
        csrf, world.regions["DXYC"].id, content, "big.csv"))
    assert as_form.status == 413
    streamed = await app.client.post("/console/registry/import", headers={"X-CSRF-Token": csrf}, data=upload_form(
        csrf, world.regions["DXYC"].id, content, "big.csv", with_field=False), allow_redirects=False)
    assert streamed.status == 303
    answer = await finished(app, streamed.headers["Location"])
    assert (answer["status"], answer["total"], answer["counts"]["imported"]) == ("done", 3000, 3000)
