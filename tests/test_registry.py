"""Registry import on a real database (SQLite file and PostgreSQL): validation, idempotence, flags."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select, text

from services.i18n import use_locale
from services.identity import (
    InvalidIdNumber,
    hash_id_last4,
    hash_id_number,
    is_mobile,
    make_id_number,
    mask_phone,
    normalize_phone,
    parse_id_number,
)
from services.models import Household, Resident, ResidentStatus
from services.regions import ensure_demo_regions, get_region, parse_regions_csv, upsert_regions
from services.registry import RowError, export_registry_xlsx, import_registry, read_rows, read_text_rows
from tests.seed import DXYC_CSV, ID_WANG, SECRET

NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


@pytest.fixture
async def committee(session):
    await ensure_demo_regions(session)
    await session.commit()
    return await get_region(session, "DXYC")


async def count(session, *where) -> int:
    return await session.scalar(select(func.count()).select_from(Resident).where(*where))


def test_phone_normalisation():
    assert normalize_phone("138 0013 8000") == "+8613800138000"
    assert normalize_phone("+86-138-0013-8000") == "+8613800138000"
    assert normalize_phone("008613800138000") == "+8613800138000"
    assert normalize_phone("8613800138000") == "+8613800138000"
    assert normalize_phone("12345") is None
    assert normalize_phone("1380013800") is None  # one digit short
    assert normalize_phone("1" * 200) is None
    assert mask_phone("+8613800138000") == "+86138****8000"


def test_landlines_are_phone_numbers_but_not_mobiles():
    assert normalize_phone("021-6400 0000") == "+862164000000"
    assert normalize_phone("(010) 1234 5678") == "+861012345678"
    assert normalize_phone("0755-12345678") == "+8675512345678"
    assert is_mobile("+8613800138000") and not is_mobile("+862164000000")
    # a Telegram contact's number is international, with or without its "+"
    assert normalize_phone("447911123456", international=True) == "+447911123456"
    assert normalize_phone("8613800138000", international=True) == "+8613800138000"


def test_id_number_validation_derives_birth_and_gender():
    number = make_id_number("310104", date(1940, 2, 29), 12, "F")
    assert parse_id_number(number.lower()) == (number, date(1940, 2, 29), "F")
    bad_check = number[:-1] + ("0" if number[-1] != "0" else "1")
    with pytest.raises(InvalidIdNumber) as err:
        parse_id_number(bad_check)
    assert err.value.reason == "checksum"
    with pytest.raises(InvalidIdNumber):
        parse_id_number("31010419400230012")
    assert hash_id_number(number, "a") != hash_id_number(number, "b")


async def test_import_reports_bad_rows_and_keeps_good_ones(session, committee):
    good = make_id_number("310104", date(1950, 1, 1), 1, "M")
    bad_checksum = good[:-1] + ("0" if good[-1] != "0" else "1")
    csv_text = "\ufeff" + "\n".join([
        "name,phone,id_number,birth_date,gender,compound,building,unit,room,living_alone,monthly_income",
        f"张三,13800000001,{good},1950-01-01,男,丁香苑,1,1,101,yes,1200",
        f"李四,13800000002,{bad_checksum},,,丁香苑,1,1,102,no,",
        ",13800000003,,,,丁香苑,1,1,103,no,",
        f"张三二,13800000004,{good},,,丁香苑,1,1,104,no,",
        f"王五,13800000005,{make_id_number('310104', date(1960, 5, 5), 2, 'F')},1960-05-06,,丁香苑,1,1,105,no,",
        "赵六,12345,,,,丁香苑,1,1,106,no,",
        "钱七,13800000007,,,,丁香苑,1,1,107,maybe,",
        "孙八,13800000008,,,女,丁香苑,1,1,108,no,lots",
    ])
    with use_locale("en"):
        report = await import_registry(session, committee, read_text_rows(csv_text), secret_key=SECRET, now=NOW)
    reasons = {r.line: r.reason for r in report.rejected}
    assert report.imported == 1
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 9}
    assert "check digit" in reasons[3]
    assert "name is missing" in reasons[4]
    assert "line 2" in reasons[5]
    assert "birth date does not match" in reasons[6]
    assert "not a valid phone number" in reasons[7]
    assert "living_alone" in reasons[8]
    assert "monthly_income" in reasons[9]
    row = await session.scalar(select(Resident))
    assert row.id_hash == hash_id_number(good, SECRET)
    assert row.id_last4_hash == hash_id_last4(good[-4:], row.id_hash, SECRET)
    assert row.birth_date == date(1950, 1, 1) and row.gender == "M" and row.living_alone is True
    assert row.phone == "+8613800000001"  # in clear in Python …
    stored = (await session.execute(text("SELECT * FROM residents"))).mappings().one()
    assert "id_last4" not in stored  # … but neither the ID number, nor its last four, nor the phone at rest
    assert not any(good[-4:] in str(v) or "13800000001" in str(v) for v in stored.values())
    assert stored["phone"].startswith("v1:") and len(stored["phone_index"]) == 64


async def test_landline_phones_and_emergency_contacts_are_imported(session, committee):
    csv_text = ("name,phone,room,building,emergency_contact_phone\n"
                "周老师,021-6432 1234,101,7,(021) 5555 0000\n"
                "吴阿姨,13800000021,102,7,0755-12345678\n")
    report = await import_registry(session, committee, read_text_rows(csv_text), secret_key=SECRET, now=NOW)
    assert report.imported == 2 and not report.rejected
    zhou = await session.scalar(select(Resident).where(Resident.phone_index == "+862164321234"))
    assert zhou.name == "周老师" and zhou.emergency_contact_phone == "+862155550000"
    wu = await session.scalar(select(Resident).where(Resident.name == "吴阿姨"))
    assert wu.emergency_contact_phone == "+8675512345678"
    again = await import_registry(session, committee, read_text_rows(csv_text), secret_key=SECRET,
                                  now=NOW + timedelta(days=1))
    assert (again.imported, again.unchanged) == (0, 2)  # matched by the phone's blind index


def test_an_encrypted_phone_cannot_be_compared_in_sql():
    with pytest.raises(TypeError, match="blind index"):
        select(Resident).where(Resident.phone == "+8613800000001")


async def test_reimport_is_idempotent_updates_and_flags(session, committee):
    first = await import_registry(session, committee, read_text_rows(DXYC_CSV), secret_key=SECRET, now=NOW)
    assert first.imported == 5 and not first.rejected
    again = await import_registry(session, committee, read_text_rows(DXYC_CSV), secret_key=SECRET,
                                  now=NOW + timedelta(days=1))
    assert (again.imported, again.updated, again.unchanged, again.flagged) == (0, 0, 5, 0)
    assert await count(session) == 5
    changed = DXYC_CSV.replace("13800138003", "13900139003").replace("王秀英,138 0013 8001", "王秀英,13800138011")
    lines = [ln for ln in changed.splitlines() if "孙二" not in ln]
    third = await import_registry(session, committee, read_text_rows("\n".join(lines)), secret_key=SECRET,
                                  now=NOW + timedelta(days=2))
    assert (third.imported, third.updated, third.flagged) == (0, 2, 1)
    moved = await session.scalar(select(Resident).where(Resident.name == "孙二"))
    assert moved.status == ResidentStatus.moved_out
    assert await count(session) == 5  # flagged, never deleted
    back = await import_registry(session, committee, read_text_rows(DXYC_CSV), secret_key=SECRET,
                                 now=NOW + timedelta(days=3))
    assert back.restored == 1
    await session.refresh(moved)
    assert moved.status == ResidentStatus.active
    households = await session.scalar(select(func.count()).select_from(Household))
    assert households == 4


async def test_xlsx_import_and_export_without_id_numbers(session, committee, tmp_path):
    wb = Workbook()
    ws = wb.active
    for line in read_text_rows(DXYC_CSV):
        ws.append(line[1])
    path = tmp_path / "registry.xlsx"
    wb.save(path)
    report = await import_registry(session, committee, read_rows(path), secret_key=SECRET, now=NOW)
    assert report.imported == 5
    data = await export_registry_xlsx(session, committee)
    sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    cells = [str(c) for row in sheet.iter_rows(values_only=True) for c in row if c is not None]
    assert "王秀英" in cells and "+8613800138001" in cells  # staff call residents: phones in clear
    assert not any(ID_WANG in c or ID_WANG[-4:] == c for c in cells)


async def test_header_without_required_columns_is_refused(session, committee):
    with pytest.raises(RowError):
        await import_registry(session, committee, read_text_rows("foo,bar\n1,2\n"), secret_key=SECRET, now=NOW)


async def test_same_id_in_another_committee_is_rejected(session, committee):
    await import_registry(session, committee, read_text_rows(DXYC_CSV), secret_key=SECRET, now=NOW)
    other = await get_region(session, "FLSQ")
    header, first_row = DXYC_CSV.splitlines()[:2]
    with use_locale("en"):
        report = await import_registry(session, other, read_text_rows(f"{header}\n{first_row}"),
                                       secret_key=SECRET, now=NOW)
    assert report.rejected and "another committee" in report.rejected[0].reason


async def test_regions_csv_import(session):
    rows, errors = parse_regions_csv("code,name,level,parent_code\n"
                                     "310000,上海市,city,\n310101,黄浦区,district,310000\n"
                                     "X1,坏层级,galaxy,310000\nX2,孤儿,street,NOPE\nX3,倒挂,district,310101\n")
    result = await upsert_regions(session, rows)
    assert result.created == 2 and len(errors) == 1 and len(result.errors) == 2
    district = await get_region(session, "310101")
    assert district.path == "/310000/310101/"
    again = await upsert_regions(session, rows)
    assert again.created == 0 and again.updated == 2


# --- household facts for owners' votes: owner, floor_area ------------------------------------------

async def household(session, code: str) -> Household:
    return await session.scalar(select(Household).where(Household.code == code).execution_options(
        populate_existing=True))


async def test_owner_and_floor_area_are_imported_per_household_in_every_spelling(session, committee):
    csv_text = "\n".join([
        "姓名,手机,楼号,单元,室,户号,业主,专有面积",
        "王一,13800000101,3,1,101,H101,是,89.5",
        "王二,13800000102,3,1,101,H101,,",  # a second member leaves the household's facts blank
        "李一,13800000103,3,1,102,H102,否,\"1,234.56 ㎡\"",
        "赵一,13800000104,3,1,103,H103,1,76.555",  # rounded to the column's 0.01 m²
        "赵二,13800000105,3,1,104,H104,0,",
        "钱一,13800000106,3,1,105,,yes,60平方米",  # the household is its address
        "孙一,13800000107,3,1,106,H106,,",
    ])
    report = await import_registry(session, committee, read_text_rows(csv_text), secret_key=SECRET, now=NOW)
    assert report.imported == 7 and not report.rejected
    facts = {code: ((hh := await household(session, code)).owner, hh.floor_area)
             for code in ("H101", "H102", "H103", "H104", "-3-1-105", "H106")}
    assert facts == {"H101": (True, Decimal("89.50")), "H102": (False, Decimal("1234.56")),
                     "H103": (True, Decimal("76.56")), "H104": (False, None), "-3-1-105": (True, Decimal("60.00")),
                     "H106": (None, None)}
    # the English headers and spellings too; a blank keeps what is on file, a stated value replaces it
    again = "\n".join(["name,phone,building,unit,room,household,owner,floor_area",
                       "王一,13800000101,3,1,101,H101,,", "王二,13800000102,3,1,101,H101,no,90",
                       "孙一,13800000107,3,1,106,H106,Y,55.25"])
    second = await import_registry(session, committee, read_text_rows(again), secret_key=SECRET,
                                   now=NOW + timedelta(days=1), flag_missing=False)
    assert not second.rejected and second.households_updated == 2
    assert ((await household(session, "H101")).owner, (await household(session, "H101")).floor_area) == (
        False, Decimal("90.00"))
    assert ((await household(session, "H106")).owner, (await household(session, "H106")).floor_area) == (
        True, Decimal("55.25"))
    assert (await household(session, "H102")).floor_area == Decimal("1234.56")  # not in the file: untouched
    same = await import_registry(session, committee, read_text_rows(again), secret_key=SECRET,
                                 now=NOW + timedelta(days=2), flag_missing=False)
    assert same.households_updated == 0 and same.unchanged == 3  # idempotent


@pytest.mark.parametrize(("owner", "area", "reason"), [
    ("maybe", "80", "owner must be yes or no"),
    ("业主", "80", "owner must be yes or no"),
    ("是", "eighty", "floor_area must be a number"),
    ("是", "80m", "floor_area must be a number"),
    ("是", "NaN", "floor_area must be a number"),
    ("是", "Infinity", "floor_area must be a number"),
    ("是", "-5", "more than 0"),
    ("是", "0", "more than 0"),
    ("是", "0.004", "more than 0"),  # rounds to 0.00 m²
    ("是", "1e12", "too large"),
])
async def test_a_bad_owner_or_floor_area_rejects_the_row_and_changes_nothing(session, committee, owner, area,
                                                                             reason):
    base = "name,phone,building,room,household,owner,floor_area\n张三,13800000201,3,201,H201,是,70\n"
    await import_registry(session, committee, read_text_rows(base), secret_key=SECRET, now=NOW)
    bad = base + f"李四,13800000202,3,202,H202,{owner},{area}\n王五,13800000203,3,201,H201,{owner},{area}\n"
    with use_locale("en"):
        report = await import_registry(session, committee, read_text_rows(bad), secret_key=SECRET,
                                       now=NOW + timedelta(days=1), flag_missing=False)
    assert [r.line for r in report.rejected] == [3, 4]
    assert all(reason in r.reason for r in report.rejected), report.rejected
    assert await count(session, Resident.name.in_(["李四", "王五"])) == 0  # nothing half-imported …
    assert await household(session, "H202") is None or (await household(session, "H202")).owner is None
    h201 = await household(session, "H201")
    assert (h201.owner, h201.floor_area) == (True, Decimal("70.00"))  # … and the household keeps its facts
    assert report.households_updated == 0


async def test_household_facts_that_contradict_an_earlier_row_or_have_no_household_are_rejected(session, committee):
    csv_text = "\n".join([
        "name,phone,building,room,household,owner,floor_area",
        "张三,13800000301,3,301,H301,yes,88",
        "张四,13800000302,3,301,H301,no,",  # contradicts line 2 on owner
        "张五,13800000303,3,301,H301,,88.4",  # … and on the area
        "张六,13800000304,3,301,H301,1,88.00",  # agrees: the same area written otherwise
        "李三,13800000305,,,,yes,50",  # no household, no room: nothing to attach the facts to
    ])
    with use_locale("en"):
        report = await import_registry(session, committee, read_text_rows(csv_text), secret_key=SECRET, now=NOW)
    reasons = {r.line: r.reason for r in report.rejected}
    assert set(reasons) == {3, 4, 6} and report.imported == 2
    assert "owner differs from line 2" in reasons[3]
    assert "floor_area differs from line 2" in reasons[4] and "88.00" in reasons[4]
    assert "belong to a household" in reasons[6]
    h301 = await household(session, "H301")
    assert (h301.owner, h301.floor_area) == (True, Decimal("88.00"))
    with use_locale("zh_Hans"):
        report = await import_registry(session, committee, read_text_rows(csv_text), secret_key=SECRET,
                                       now=NOW + timedelta(days=1))
    reasons = {r.line: r.reason for r in report.rejected}
    assert "业主" in reasons[3] and "专有面积" in reasons[4] and "户号" in reasons[6]
    assert not any("a" <= ch.lower() <= "z" for r in report.rejected for ch in r.reason), reasons  # all Chinese


async def test_xlsx_owner_and_floor_area_cells_and_the_export(session, committee, tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.append(["姓名", "手机", "楼号", "室", "户号", "产权人", "建筑面积"])
    ws.append(["周一", "13800000401", 3, 401, "H401", True, 89.5])  # XLSX cells: a bool and a float
    ws.append(["周二", "13800000402", 3, 402, "H402", 0, 102])
    ws.append(["周三", "13800000403", 3, 403, "H403", "是", "abc"])
    path = tmp_path / "owners.xlsx"
    wb.save(path)
    with use_locale("en"):
        report = await import_registry(session, committee, read_rows(path), secret_key=SECRET, now=NOW)
    assert report.imported == 2 and [(r.line, "floor_area" in r.reason) for r in report.rejected] == [(4, True)]
    assert ((await household(session, "H401")).owner, (await household(session, "H402")).floor_area) == (
        True, Decimal("102.00"))
    with use_locale("en"):
        data = await export_registry_xlsx(session, committee)
    header, *rows = load_workbook(io.BytesIO(data), read_only=True).worksheets[0].iter_rows(values_only=True)
    owner, area = header.index("home owner"), header.index("exclusive floor area (m²)")
    by_name = {row[0]: (row[owner], row[area]) for row in rows}
    assert by_name == {"周一": (True, 89.5), "周二": (False, 102)}
