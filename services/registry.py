"""The resident registry: import (CSV/XLSX), re-import, moved-out flags, export.

Imports stream the file in batches, so memory stays bounded by the batch size plus one small
entry per household and per ID hash seen in the file (to report duplicates with their line).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.i18n import N_, _
from services.identity import (
    InvalidIdNumber,
    hash_id_last4,
    hash_id_number,
    last4,
    normalize_phone,
    parse_id_number,
    quoted_cell,
)
from services.labels import label
from services.models import Account, Household, Region, RegionLevel, Resident, ResidentStatus
from services.regions import committee_compounds
from services.sheets import row as sheet_row
from services.sql import rowcount

BATCH = 1000

# Canonical column → accepted header spellings (lower-cased, spaces removed).
ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "姓名", "fullname"),
    "phone": ("phone", "手机", "手机号", "手机号码", "电话", "mobile"),
    "id_number": ("id_number", "idnumber", "身份证号", "身份证", "身份证号码", "id"),
    "birth_date": ("birth_date", "birthdate", "出生日期", "生日"),
    "gender": ("gender", "sex", "性别"),
    "compound": ("compound", "小区"),
    "building": ("building", "楼号", "楼", "幢"),
    "unit": ("unit", "单元"),
    "room": ("room", "室", "房号", "门牌"),
    "household": ("household", "户号", "household_code"),
    "living_alone": ("living_alone", "独居"),
    "hukou": ("hukou", "户籍"),
    "disability_level": ("disability_level", "残疾等级"),
    "monthly_income": ("monthly_income", "月收入"),
    "emergency_contact_phone": ("emergency_contact_phone", "紧急联系人电话", "紧急联系电话"),
    # Household facts for owners' votes (Civil Code art. 278): stated on any row of the household.
    "owner": ("owner", "业主", "产权人", "is_owner"),
    "floor_area": ("floor_area", "floorarea", "专有面积", "建筑面积"),
}
_HEADER = {alias: canon for canon, names in ALIASES.items() for alias in names}
_TRUE = {"1", "y", "yes", "true", "是", "√", "✓", "x"}
_FALSE = {"0", "n", "no", "false", "否", ""}
_GENDER = {"m": "M", "male": "M", "男": "M", "f": "F", "female": "F", "女": "F"}
_HUKOU = {"本市": "local", "上海": "local", "local": "local", "外省市": "nonlocal", "外地": "nonlocal",
          "nonlocal": "nonlocal", "non-local": "nonlocal"}
_CN_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4}
ID_REASONS = {
    "length": N_("the ID number must have 18 characters"),
    "characters": N_("the ID number has characters other than digits and a final X"),
    "checksum": N_("the ID number's check digit is wrong"),
    "birth_date": N_("the ID number holds an impossible birth date"),
}


class RowError(ValueError):
    pass


@dataclass
class Rejected:
    line: int
    reason: str


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    flagged: int = 0
    restored: int = 0
    households_updated: int = 0  # owner / floor_area changed (household facts, not resident rows)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return self.imported + self.updated + self.unchanged + len(self.rejected)

    def summary(self) -> str:
        return _("imported {imported}, updated {updated}, unchanged {unchanged}, flagged as moved out "
                 "{flagged}, rejected {rejected}").format(
            imported=self.imported, updated=self.updated, unchanged=self.unchanged,
            flagged=self.flagged, rejected=len(self.rejected))


# --- reading files ---------------------------------------------------------------------------

def read_rows(path: Path) -> Iterator[tuple[int, list[Any]]]:
    """(line number, cells) of a CSV (UTF-8, BOM or not) or XLSX file, header row included."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        try:
            for n, row in enumerate(wb.worksheets[0].iter_rows(values_only=True), start=1):
                yield n, list(row)
        finally:
            wb.close()
        return
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        for row in reader:
            yield reader.line_num, row


def read_text_rows(text: str) -> Iterator[tuple[int, list[Any]]]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    for row in reader:
        yield reader.line_num, row


def map_header(cells: list[Any]) -> dict[str, int]:
    """Canonical column name → index; raises RowError naming missing required columns."""
    index: dict[str, int] = {}
    for i, cell in enumerate(cells):
        key = re.sub(r"\s+", "", str(cell or "")).lower()
        canon = _HEADER.get(key)
        if canon and canon not in index:
            index[canon] = i
    missing = [c for c in ("name",) if c not in index]
    if missing or not ({"phone", "id_number", "household", "room"} & index.keys()):
        raise RowError(_("the header row must name at least: name, and one of phone, id_number, "
                         "household or room"))
    return index


# --- one row ---------------------------------------------------------------------------------

def _text(value: Any) -> str:
    """A cell as stripped text: XLSX gives numbers and dates, CSV gives strings."""
    if value is None:
        return ""
    if type(value) is str:
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat() if isinstance(value, date) else str(value).strip()


def _cells(cells: list[Any], index: dict[str, int]) -> dict[str, str]:
    n = len(cells)
    return {name: _text(cells[i]) if i < n else "" for name, i in index.items()}


def _bool(value: str, column: str = "living_alone") -> bool | None:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return None if low == "" else False
    if column == "owner":
        raise RowError(_("owner must be yes or no (是/否, 1/0), not {value!r}").format(value=quoted_cell(value)))
    raise RowError(_("living_alone must be yes or no, not {value!r}").format(value=quoted_cell(value)))


_AREA_UNITS = ("平方米", "平米", "㎡", "m²", "m2", "sqm")
MAX_FLOOR_AREA = Decimal("9999999999.99")  # Numeric(12, 2)


def _area(value: str) -> Decimal | None:
    """An exclusive floor area in m², rounded to 0.01 m² (the column's scale); more than 0."""
    if not value:
        return None
    text = re.sub(r"\s+", "", value).replace(",", "").replace("，", "")
    for unit in _AREA_UNITS:
        text = text.removesuffix(unit)
    try:
        area = Decimal(text)
    except InvalidOperation:
        area = None
    if area is None or not area.is_finite():
        raise RowError(_("floor_area must be a number of square metres (e.g. 89.5), not {value!r}").format(
            value=quoted_cell(value)))
    area = area.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if not 0 < area <= MAX_FLOOR_AREA:
        raise RowError(_("floor_area must be more than 0 m², not {value!r}").format(value=quoted_cell(value))
                       if area <= 0 else _("floor_area {value!r} is too large").format(value=quoted_cell(value)))
    return area


def _int(value: str, column: str) -> int | None:
    if not value:
        return None
    text = value.replace(",", "").removesuffix("级").removesuffix("元")
    if text in _CN_DIGITS:
        return _CN_DIGITS[text]
    try:
        return round(float(text))
    except ValueError:
        raise RowError(_("{column} must be a number, not {value!r}").format(column=column, value=quoted_cell(value))
                       ) from None


def _date(value: str) -> date | None:
    if not value:
        return None
    text = value.replace("/", "-").replace(".", "-").replace("年", "-").replace("月", "-").rstrip("日")
    try:
        if re.fullmatch(r"\d{8}", text):
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        y, m, d = (int(p) for p in text.split("-")[:3])
        return date(y, m, d)
    except ValueError:
        raise RowError(_("birth_date {value!r} is not a date (use 1950-03-21)").format(
            value=quoted_cell(value))) from None


def parse_row(cells: list[Any], index: dict[str, int], secret_key: str) -> dict[str, Any]:
    """Validate one registry row into resident fields (no clear ID number in the result)."""
    cell = _cells(cells, index).get

    name = cell("name", "")
    if not name:
        raise RowError(_("the name is missing"))
    if len(name) > 100:
        raise RowError(_("the name is longer than 100 characters"))
    out: dict[str, Any] = {"name": name}
    raw_phone = cell("phone", "")
    out["phone"] = normalize_phone(raw_phone)
    if raw_phone and out["phone"] is None:
        raise RowError(_("the phone number is not a valid phone number"))
    raw_ec = cell("emergency_contact_phone", "")
    out["emergency_contact_phone"] = normalize_phone(raw_ec)
    if raw_ec and out["emergency_contact_phone"] is None:
        raise RowError(_("the emergency contact phone is not a valid phone number"))
    gender_raw = cell("gender", "").lower()
    gender = _GENDER.get(gender_raw) if gender_raw else None
    if gender_raw and gender is None:
        raise RowError(_("gender must be 男/女 or M/F"))
    birth = _date(cell("birth_date", ""))
    id_raw = cell("id_number", "")
    out["id_hash"] = out["id_last4_hash"] = None
    if id_raw:
        try:
            id_norm, id_birth, id_gender = parse_id_number(id_raw)
        except InvalidIdNumber as exc:
            raise RowError(_(ID_REASONS[exc.reason])) from None
        if birth and birth != id_birth:
            raise RowError(_("the birth date does not match the ID number"))
        if gender and gender != id_gender:
            raise RowError(_("the gender does not match the ID number"))
        birth, gender = id_birth, id_gender
        out["id_hash"] = hash_id_number(id_norm, secret_key)
        out["id_last4_hash"] = hash_id_last4(last4(id_norm), out["id_hash"], secret_key)
    out["birth_date"], out["gender"] = birth, gender
    for col in ("compound", "building", "unit", "room"):
        out[col] = cell(col, "")[:32 if col != "compound" else 100] or None
    out["household"] = cell("household", "")[:64] or None
    out["living_alone"] = _bool(cell("living_alone", ""))
    hukou = cell("hukou", "")
    out["hukou"] = _HUKOU.get(hukou.lower(), hukou[:32]) if hukou else None
    out["disability_level"] = _int(cell("disability_level", ""), "disability_level")
    if out["disability_level"] is not None and not 0 <= out["disability_level"] <= 4:
        raise RowError(_("disability_level must be between 0 and 4"))
    out["monthly_income"] = _int(cell("monthly_income", ""), "monthly_income")
    out["owner"] = _bool(cell("owner", ""), "owner")
    out["floor_area"] = _area(cell("floor_area", ""))
    if not (out["phone"] or out["id_hash"] or out["household"] or out["room"]):
        raise RowError(_("a row needs a phone, an ID number or an address to identify the resident"))
    if (out["owner"] is not None or out["floor_area"] is not None) and household_code(out) is None:
        raise RowError(_("owner and floor_area belong to a household: the row needs a household or a room"))
    return out


# --- importing -------------------------------------------------------------------------------

RESIDENT_FIELDS = ("name", "phone", "id_hash", "id_last4_hash", "birth_date", "gender", "compound", "building",
                   "unit", "room", "living_alone", "hukou", "disability_level", "monthly_income",
                   "emergency_contact_phone")


def household_code(fields: dict[str, Any]) -> str | None:
    if fields["household"]:
        return fields["household"]
    parts = [fields["compound"], fields["building"], fields["unit"], fields["room"]]
    if not fields["room"]:
        return None
    return "-".join(p or "" for p in parts)


async def import_registry(
    session: AsyncSession,
    committee: Region,
    rows: Iterable[tuple[int, list[Any]]],
    *,
    secret_key: str,
    now: datetime,
    actor_account_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    flag_missing: bool = True,
) -> ImportReport:
    """Import or re-import a committee's registry; idempotent. Matches on ID hash, then phone.

    Residents of the committee missing from the file are flagged moved-out (never deleted); their
    accounts lose resident rights until staff confirm. Commits once per batch.
    """
    if committee.level != RegionLevel.committee:
        raise ValueError("registry imports go to a committee")
    report = ImportReport()
    it = iter(rows)
    header = None
    for _line, cells in it:
        if any(str(c or "").strip() for c in cells):
            header = map_header(cells)
            break
    if header is None:
        raise RowError(_("the file is empty"))

    compounds = await committee_compounds(session, committee)
    households: dict[str, int] = dict((await session.execute(
        select(Household.code, Household.id).where(Household.committee_id == committee.id))).all())
    seen_hashes: dict[str, int] = {}
    facts: HouseholdFacts = {}
    batch: list[tuple[int, dict[str, Any]]] = []
    count = 0

    async def flush() -> None:
        await _apply_batch(session, committee, batch, compounds, households, report, now, facts)
        await session.commit()
        batch.clear()

    for line, cells in it:
        if not any(str(c or "").strip() for c in cells):
            continue
        count += 1
        try:
            fields = parse_row(cells, header, secret_key)
        except RowError as exc:
            report.rejected.append(Rejected(line, str(exc)))
            continue
        if fields["id_hash"]:
            first = seen_hashes.get(fields["id_hash"])
            if first is not None:
                report.rejected.append(Rejected(line, _("duplicate ID number (also on line {line})").format(
                    line=first)))
                continue
            seen_hashes[fields["id_hash"]] = line
        batch.append((line, fields))
        if len(batch) >= BATCH:
            await flush()
            if progress:
                progress(count)
    if batch:
        await flush()
    if progress:
        progress(count)
    if flag_missing:
        report.flagged = await _flag_missing(session, committee, now)
    from services.tags import recompute_rule_tags

    await recompute_rule_tags(session, now, [committee.id])  # rule tags follow the new registry at once
    audit.record(session, "registry.import", now=now, actor_account_id=actor_account_id,
                 target_type="region", target_id=committee.id, region_id=committee.id,
                 detail={"imported": report.imported, "updated": report.updated, "flagged": report.flagged,
                         "households_updated": report.households_updated, "rejected": len(report.rejected)})
    await session.commit()
    return report


_MATCH_COLUMNS = (Resident.id, Resident.committee_id, Resident.status, Resident.compound_id, Resident.household_id,
                  *(getattr(Resident, f) for f in RESIDENT_FIELDS))


# Household code → {"owner" | "floor_area": (first line stating it, value)} over the whole file.
HouseholdFacts = dict[str, dict[str, tuple[int, Any]]]
HOUSEHOLD_FACTS = ("owner", "floor_area")


def _conflicting_fact(facts: HouseholdFacts, code: str | None, fields: dict[str, Any]) -> str | None:
    """Why this row's owner / floor_area contradicts an earlier row of its household (None: it agrees)."""
    if code is None:
        return None
    known = facts.get(code, {})
    for fact in HOUSEHOLD_FACTS:
        value = fields[fact]
        if value is not None and fact in known and known[fact][1] != value:
            if fact == "owner":
                return _("owner differs from line {line} of the same household").format(line=known[fact][0])
            return _("floor_area differs from line {line} of the same household ({area} m²)").format(
                line=known[fact][0], area=known[fact][1])
    return None


def _record_facts(facts: HouseholdFacts, code: str | None, line: int, fields: dict[str, Any]) -> bool:
    """Remember what the row states about its household; True when it states something."""
    stated = False
    for fact in HOUSEHOLD_FACTS:
        if code is not None and fields[fact] is not None:
            facts.setdefault(code, {}).setdefault(fact, (line, fields[fact]))
            stated = True
    return stated


async def _apply_batch(session, committee, batch, compounds, households, report, now,
                       facts: HouseholdFacts | None = None) -> None:
    """Match a batch against existing rows and write it with three statements (Core executemany):
    the inserts, the changed rows, and the "seen" stamp of unchanged ones; then the household facts
    (owner, floor_area) its accepted rows state. A household fact left blank keeps the one on file."""
    facts = {} if facts is None else facts
    hashes = [f["id_hash"] for _, f in batch if f["id_hash"]]
    phones = [f["phone"] for _, f in batch if f["phone"]]
    by_hash: dict[str, dict[str, Any]] = {}
    by_phone: dict[str, list[dict[str, Any]]] = {}
    if hashes or phones:
        conds = []
        if hashes:
            conds.append(Resident.id_hash.in_(hashes))
        if phones:
            conds.append(Resident.phone_index.in_(phones) & (Resident.committee_id == committee.id))
        for r in (await session.execute(select(*_MATCH_COLUMNS).where(or_(*conds)))).mappings():
            if r["id_hash"]:
                by_hash[r["id_hash"]] = r
            if r["phone"] and r["committee_id"] == committee.id:
                by_phone.setdefault(r["phone"], []).append(r)
    await _ensure_households(session, committee, households, batch)
    new_rows: list[dict[str, Any]] = []
    changed_rows: list[dict[str, Any]] = []
    seen_ids: list[int] = []
    claimed: set[int] = set()
    stating: set[str] = set()  # households whose facts accepted rows of this batch state
    for line, fields in batch:
        existing = by_hash.get(fields["id_hash"]) if fields["id_hash"] else None
        if existing is not None and existing["committee_id"] != committee.id:
            report.rejected.append(Rejected(line, _("this ID number is registered with another committee")))
            continue
        code = household_code(fields)
        conflict = _conflicting_fact(facts, code, fields)
        if conflict is not None:
            report.rejected.append(Rejected(line, conflict))
            continue
        if code is not None and _record_facts(facts, code, line, fields):
            stating.add(code)
        if existing is None and fields["phone"]:
            candidates = [r for r in by_phone.get(fields["phone"], [])
                          if r["id"] not in claimed and (not r["id_hash"] or not fields["id_hash"])
                          and r["name"] == fields["name"]]
            existing = candidates[0] if candidates else None
        values = {k: fields[k] for k in RESIDENT_FIELDS}
        values["compound_id"] = await _compound_id(session, committee, compounds, fields["compound"])
        values["household_id"] = households[code] if code else None
        if existing is None:  # phone_index: PhoneIndex hashes the clear number
            new_rows.append({**values, "phone_index": values["phone"], "committee_id": committee.id,
                             "status": ResidentStatus.active, "registry_seen_at": now, "created_at": now,
                             "updated_at": now})
            continue
        claimed.add(existing["id"])
        if fields["id_hash"] is None:  # a row without an ID number keeps the one on file
            values["id_hash"], values["id_last4_hash"] = existing["id_hash"], existing["id_last4_hash"]
        restored = existing["status"] == ResidentStatus.moved_out
        if restored or any(existing[k] != v for k, v in values.items()):
            status = ResidentStatus.active if restored else existing["status"]
            changed_rows.append({**values, "phone_index": values["phone"], "id": existing["id"], "status": status,
                                 "registry_seen_at": now, "updated_at": now})
            report.restored += restored
            report.updated += 1
        else:
            seen_ids.append(existing["id"])
            report.unchanged += 1
    residents = cast(Table, Resident.__table__)  # a declarative class over one Table
    if new_rows:
        await session.execute(insert(residents), new_rows)
        report.imported += len(new_rows)
    if changed_rows:
        await session.execute(update(Resident), changed_rows)  # bulk UPDATE by primary key
    if seen_ids:
        await session.execute(update(residents).where(residents.c.id.in_(seen_ids))
                              .values(registry_seen_at=now))
    if stating:
        await _update_household_facts(session, [households[c] for c in stating], facts, report)


async def _update_household_facts(session: AsyncSession, ids: list[int], facts: HouseholdFacts,
                                  report: ImportReport) -> None:
    """Write the stated owner / floor_area of these households where they differ (one bulk UPDATE)."""
    changed: list[dict[str, Any]] = []
    rows = await session.execute(select(Household.id, Household.code, Household.owner, Household.floor_area)
                                 .where(Household.id.in_(ids)))
    for hh_id, code, owner, area in rows:
        stated = {fact: value for fact, (_line, value) in facts.get(code, {}).items()}
        new = {"owner": stated.get("owner", owner), "floor_area": stated.get("floor_area", area)}
        if new["owner"] != owner or new["floor_area"] != (None if area is None else Decimal(area)):
            changed.append({"id": hh_id, **new})
    if changed:
        await session.execute(update(Household), changed)  # bulk UPDATE by primary key
        report.households_updated += len(changed)


async def _compound_id(session, committee: Region, compounds: dict[str, Region], name: str | None) -> int | None:
    if not name:
        return None
    region = compounds.get(name)
    if region is None:
        n = await session.scalar(select(func.count()).select_from(Region).where(Region.parent_id == committee.id))
        code = f"{committee.code}-{n + 1:02d}"
        while await session.scalar(select(Region.id).where(Region.code == code)) is not None:
            n += 1
            code = f"{committee.code}-{n + 1:02d}"
        region = Region(code=code, name=name, level=RegionLevel.compound, parent_id=committee.id,
                        path=f"{committee.path}{code}/")
        session.add(region)
        await session.flush()
        compounds[name] = region
    return region.id


async def _ensure_households(session, committee: Region, households: dict[str, int], batch) -> None:
    """Create the batch's new households in one statement and learn their ids."""
    new: dict[str, dict[str, Any]] = {}
    for _line, f in batch:
        code = household_code(f)
        if code and code not in households and code not in new:
            new[code] = {"committee_id": committee.id, "code": code, "building": f["building"],
                         "unit": f["unit"], "room": f["room"], "compound_id": None}
    if not new:
        return
    await session.execute(insert(Household), list(new.values()))
    rows = await session.execute(select(Household.code, Household.id).where(
        Household.committee_id == committee.id, Household.code.in_(list(new))))
    households.update(dict(rows.all()))


async def _flag_missing(session: AsyncSession, committee: Region, now: datetime) -> int:
    result = await session.execute(
        update(Resident)
        .where(Resident.committee_id == committee.id, Resident.status == ResidentStatus.active,
               or_(Resident.registry_seen_at.is_(None), Resident.registry_seen_at < now))
        .values(status=ResidentStatus.moved_out, updated_at=now)
    )
    return rowcount(result)


async def confirm_resident(session: AsyncSession, resident: Resident, *, actor_account_id: int, now: datetime) -> None:
    """Staff confirm a flagged (moved-out) resident still lives here; restores resident rights."""
    if resident.status == ResidentStatus.moved_out:
        resident.status = ResidentStatus.active
        resident.updated_at = now
        audit.record(session, "registry.confirm", now=now, actor_account_id=actor_account_id,
                     target_type="resident", target_id=resident.id, region_id=resident.committee_id)


# --- export ----------------------------------------------------------------------------------

EXPORT_COLUMNS = ("name", "phone", "birth_date", "gender", "compound", "building", "unit", "room",
                  "household", "living_alone", "hukou", "disability_level", "monthly_income",
                  "emergency_contact_phone", "owner", "floor_area", "status", "verified")


async def export_registry_xlsx(session: AsyncSession, committee: Region) -> bytes:
    """The committee's registry as XLSX, phone numbers in clear (staff call them); no ID numbers, which
    are held only as keyed hashes."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    # Excel refuses \ / ? * [ ] : in a sheet title (and more than 31 characters); a region's name may hold them.
    ws = wb.create_sheet(re.sub(r"[\\/?*\[\]:]", " ", committee.name)[:31].strip() or committee.code[:31])
    ws.append([label(c) for c in EXPORT_COLUMNS])
    stmt = (
        select(Resident, Household.code, Household.owner, Household.floor_area, Account.id)
        .outerjoin(Household, Household.id == Resident.household_id)
        .outerjoin(Account, Account.resident_id == Resident.id)
        .where(Resident.committee_id == committee.id)
        .order_by(Resident.building, Resident.unit, Resident.room, Resident.name)
    )
    for r, hh_code, owner, area, account_id in (await session.execute(stmt)).all():
        ws.append(sheet_row(ws, [r.name, r.phone, r.birth_date, r.gender, r.compound, r.building, r.unit, r.room,
                                 hh_code, r.living_alone, r.hukou, r.disability_level, r.monthly_income,
                                 r.emergency_contact_phone, owner, area, r.status.value, account_id is not None]))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
