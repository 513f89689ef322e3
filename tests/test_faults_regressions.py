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
