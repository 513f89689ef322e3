"""What the fault and fuzz tests found, each pinned down end to end through the sandbox and the real
dispatcher (tests/test_fuzz_updates.py, tests/test_faults_outages.py found them)."""

from __future__ import annotations

from sqlalchemy import func, select, text

from services.models import Account
from tests.helpers import ErrorLog, body, tr


async def test_a_double_tap_on_i_agree_gives_consent_once_and_no_error(stack):
    """Both taps carry the consent message with its buttons; the first takes them away, the second's
    edit finds nothing to change ("message is not modified"): done, not "something went wrong"."""
    user = await stack.client.create_user("Twice", language_code="en")
    await user.send("/start")
    consent = await user.last_message()
    agree = next(b["callback_data"] for row in consent["reply_markup"]["inline_keyboard"] for b in row
                 if b["text"] == tr("en", "I agree"))
    with ErrorLog() as errors:
        stack.sandbox.user_callback(user.id, consent["message_id"], agree)
        stack.sandbox.user_callback(user.id, consent["message_id"], agree)
        await stack.settled()
    assert errors.lines == []
    said = [body(m) for m in await user.bot_messages()]
    assert not [t for t in said if t.startswith("Sorry")], said
    assert sum(t.startswith(tr("en", "Other ways to join:")) for t in said) == 2  # each tap is told how to go on
    assert (await user.messages())[1]["reply_markup"] is None  # the buttons are gone
    async with stack.session() as s:
        assert await s.scalar(select(func.count()).select_from(Account).where(
            Account.telegram_id == user.id, Account.consent_at.is_not(None))) == 1


async def test_when_the_database_fails_before_the_account_is_read_the_apology_is_in_the_users_language(stack):
    """The outage test's finding: with the database away, the error handler answered English speakers
    in Chinese (the locale is set once the account is read, and it never was)."""
    english = await stack.client.create_user("English", language_code="en")
    chinese = await stack.client.create_user("中文", language_code="zh-hans")
    async with stack.engine.begin() as conn:  # every update's first statement now fails
        await conn.execute(text("DROP TABLE processed_updates"))
    with ErrorLog() as errors:
        await english.send("/help")
        await chinese.send("/help")
    assert len(errors.lines) == 2
    assert body(await english.last_message()) == tr(
        "en", "Sorry, something went wrong on our side. Please try again in a moment.")
    assert body(await chinese.last_message()) == tr(
        "zh-hans", "Sorry, something went wrong on our side. Please try again in a moment.")


async def test_a_forged_page_button_on_a_file_shows_the_page_as_a_new_message(stack):
    """The fuzz's finding: the topic list's page button pressed on a message without text (here the
    registry export, a file) made its handler edit a text that is not there: an error. Now the page
    comes as a new message with its buttons."""
    from notifications.callbacks import TopicsCb
    from services import discussions as ds
    from services.scope import Actor, load_staff_grants
    from tests.helpers import dxyc_member

    staff = await dxyc_member(stack, "staff", staff=True)
    async with stack.session() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == staff.id))
        actor = Actor(account=account, staff=await load_staff_grants(s, account.id))
        await ds.create_topic(s, actor, ds.TopicDraft(title="垃圾分类", body="大家说说看"), now=stack.clock(),
                              cfg=stack.dp["discussion_config"])
        await s.commit()
    await staff.send("/export")
    export = await staff.last_message()
    assert export["document"] and export["text"] is None
    with ErrorLog() as errors:
        await staff.callback(export["message_id"], TopicsCb(pg=0).pack())
    assert errors.lines == []
    page = await staff.last_message()
    assert page["message_id"] != export["message_id"] and "垃圾分类" in body(page)
    assert page["reply_markup"]["inline_keyboard"]


async def test_the_same_enrolment_twice_is_audited_once_and_a_change_again(session):
    """The two-worker test's finding: a double tap on a resident's enrol button recorded two
    enrolments in the audit log although the second changed nothing."""
    from services import checkins as cs
    from services.models import AuditLog, CheckinPlan
    from tests.helpers import NOW, make_world

    world = await make_world(session)
    cfg = cs.CheckinConfig()
    zhao = world.residents["zhao"]
    for minute in (600, 600, 630):
        await cs.enrol_resident(session, zhao, now=NOW, cfg=cfg, minute=minute, by_account_id=None)
        await session.commit()
    audits = (await session.scalars(select(AuditLog.detail).where(AuditLog.action == "checkin.enrol"))).all()
    assert [(d["time"], d["created"]) for d in audits] == [("10:00", True), ("10:30", False)]
    assert await session.scalar(select(func.count()).select_from(CheckinPlan)) == 1


async def test_a_nul_character_typed_is_no_database_error(session):
    """The fuzz on PostgreSQL found it: U+0000 in a committee search (any text from Telegram may carry
    one) failed with "invalid byte sequence for encoding UTF8". PostgreSQL's text cannot hold it, so the
    engine drops it from what it sends; SQLite keeps it."""
    from services.accounts import TelegramUser, touch_account
    from services.verification import find_committees
    from tests.helpers import NOW, make_world

    await make_world(session)
    found = [r.code for r in await find_committees(session, "DXYC\x00")]
    account = await touch_account(session, TelegramUser(555_001, "Wang\x00Xiu"), NOW)
    await session.commit()
    stored = await session.scalar(select(Account.first_name).where(Account.id == account.id).execution_options(
        populate_existing=True))
    assert found == ["DXYC"]
    assert stored == ("WangXiu" if session.bind.dialect.name == "postgresql" else "Wang\x00Xiu")


async def test_my_data_from_the_menu_answers_as_the_command_does(stack):
    """The fuzz found it: /mydata came to need the update's time, and the menu's "📄 My data" button,
    which calls the same handler, did not pass it (TypeError, "something went wrong")."""
    user = await stack.client.create_user("Menu", language_code="en")
    await user.send("/menu")
    with ErrorLog() as errors:
        await user.press(tr("en", "📄 My data"))
    assert errors.lines == []
    said = await user.bot_messages_since_last_action()
    assert any(m.get("document") for m in said), said
    assert not [m for m in said if body(m).startswith("Sorry")]
