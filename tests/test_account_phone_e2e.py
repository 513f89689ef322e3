"""The phone an account shares as its own Telegram contact, end to end: a resident verified by staff
review (the registry has no phone for them) is reachable from a check-in alert, sees the number in
/mydata, and /forget deletes it; the number is never in the database in clear."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, text

from bot.runtime import outbox_redact_tick
from services.models import Account, Base, Resident
from tests import test_checkins_e2e as checkins_e2e
from tests.helpers import consent, texts
from tests.test_checkins_e2e import has, text_of

world = checkins_e2e.world  # the fixture: seeded registry, duty staff, a clock that moves

PHONE = "+8613912345678"  # not in the seeded registry
DIGITS = PHONE.removeprefix("+86")  # how it would show in clear, whatever the format
NAME = "钱小芳"


async def tables_holding(sessions, needle: str) -> set[str]:
    """Tables with a column holding ``needle`` as stored (read raw, past the column types)."""
    found = set()
    async with sessions() as s:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                sql = text(f'SELECT count(*) FROM "{table.name}" WHERE CAST("{column.name}" AS TEXT) LIKE :p')
                if await s.scalar(sql, {"p": f"%{needle}%"}):
                    found.add(table.name)
    return found


def database_bytes(stack) -> bytes:
    """The SQLite file and its write-ahead log as they are on disk."""
    db = stack.settings.data_dir / "e2e.sqlite3"
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


async def verified_by_review(w):
    """Shares their own contact (not in the registry), asks for review; the duty staff approve."""
    user = await w.stack.client.create_user("小芳", language_code="en", phone_number=PHONE)
    await consent(user, "en")
    await user.share_contact()
    assert "I could not find this phone number in the registry." in await texts(user)
    await user.press("Ask staff to verify me")
    await user.send(NAME)
    await user.send("迎春小区 7号楼 1单元 301")
    await user.send("迎春")
    await user.press("丁香迎春居委会")
    assert "sent to the committee staff" in await texts(user)
    # the request reaches staff through the outbox: waited for before their first action, so that
    # it lands as no reply of theirs
    await w.duty.wait_for_message(has("New verification request"))
    await w.duty.send("/pending")
    assert NAME in await texts(w.duty)
    await w.duty.press("Approve")
    await user.wait_for_message(has("the committee staff verified you"))
    return user


async def test_a_resident_verified_by_review_is_reachable_on_the_phone_they_shared(world):
    w = world
    user = await verified_by_review(w)
    async with w.sessions() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == user.id))
        resident = await s.get(Resident, account.resident_id)
        assert account.verification_method == "review" and resident.name == NAME
        assert resident.phone is None and account.phone == PHONE  # the registry has none; the account has
        stored = await s.scalar(text("SELECT phone FROM accounts WHERE telegram_id = :t"), {"t": user.id})
    assert stored.startswith("v1:") and DIGITS not in stored  # encrypted at rest
    assert DIGITS.encode() not in database_bytes(w.stack)  # nowhere in the file, not even in the log
    assert await tables_holding(w.sessions, DIGITS) == set()

    # a forwarded contact (someone else's) is not kept: the account's own number stays
    other = await w.stack.client.create_user("Other", language_code="en", phone_number="+8613700001111")
    await consent(other, "en")
    await other.share_contact(phone_number="+8613911112222", user_id=user.id)
    assert "not someone else's" in await texts(other)
    async with w.sessions() as s:
        assert await s.scalar(select(Account.phone).where(Account.telegram_id == other.id)) is None

    # enrolled in check-ins, silent: the alert gives staff the number the account shared, and says so
    await w.duty.send(f"/checkin_enrol {NAME} 10:00")
    assert f"Enrolled {NAME}" in text_of(await w.duty.last_message())
    await user.wait_for_message(has("enrolled you in daily check-ins"))
    assert (await w.tick(timedelta(minutes=1))).opened == 1
    await user.wait_for_message(has("How are you today?"))
    await w.tick(timedelta(minutes=30))
    await user.wait_for_message(has("Reminder"))  # through the outbox: not in the middle of /mydata below
    await w.tick(timedelta(minutes=60))
    alert = text_of(await w.duty.wait_for_message(lambda m: NAME in text_of(m) and "has not answered" in text_of(m)))
    assert f"Phone: {PHONE} (shared in Telegram)" in alert, alert
    # the alert's outbox row holds the card until its retention period ends, like a registry phone
    assert await tables_holding(w.sessions, DIGITS) == {"outbox"}

    # /mydata shows it (masked in the chat, whole in the file)
    await user.send("/mydata")
    chat, file = await user.bot_messages_since_last_action()
    assert "phone: +86139****5678" in text_of(chat) and DIGITS not in text_of(chat)
    data = json.loads(w.stack.sandbox.get_file(file["document"]["file_id"]).data)
    assert data["account"]["phone"] == PHONE

    # /forget deletes it with the account
    await user.send("/forget")
    await user.press("Yes, delete my data")
    async with w.sessions() as s:
        assert await s.scalar(select(Account).where(Account.telegram_id == user.id)) is None
        assert await s.scalar(text("SELECT count(*) FROM accounts WHERE phone IS NOT NULL")) == 0
    # and once the alert's message is past its retention period, the number is nowhere
    w.clock.advance(w.stack.settings.outbox_pii_retention + timedelta(hours=1))
    assert await outbox_redact_tick(w.stack.runtime, w.now()) >= 1
    assert await tables_holding(w.sessions, DIGITS) == set()
