"""Policy matching through the real dispatcher and the sandbox: a verified resident runs /benefits and is
asked only what the registry does not know; an unverified user is checked anonymously with nothing
stored; staff match and push, the resident says they applied, the report shows it, and a second push
within 90 days tells nobody; the scheduler's ``policies`` tick sends the one follow-up, once, and none
to whoever applied."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bot.runtime import scheduled_ticks
from services import policies as pol
from services.i18n import translate
from services.models import Account, OutboxMessage, PolicyAnswer, PolicyCase, PolicyConsent
from tests.harness import running_stack
from tests.helpers import PacedClock, body, make_staff, texts
from tests.seed import household_codes, seed_registry

CATALOGUE = """\
    sample: true
    fields:
      - name: income_per_head
        type: int
        min: 0
        max: 1000000
        label: {zh: 家庭月人均收入, en: household income per head}
        question:
          zh: 您家庭每月人均收入大约多少元？
          en: "Roughly what is your household's monthly income per person?"
      - name: has_device
        type: bool
        label: {zh: 已有紧急呼叫设备, en: already has an emergency call device}
        question: {zh: 您家里已经有紧急呼叫设备了吗？, en: "Do you already have an emergency call device?"}
    policies:
      - code: meal_t
        title: {zh: 助餐补贴, en: Meal assistance}
        summary: {zh: 长者食堂每餐补贴。, en: Subsidised meals for older residents.}
        rule: 'age >= 80 or (age >= 60 and living_alone)'
        benefit: {text: {zh: 每餐补贴, en: a subsidy per meal}, unit: {zh: 元/餐, en: yuan a meal},
                  amounts: [{when: 'age >= 80', amount: 5}]}
        apply: {where: {zh: 居委会, en: the neighbourhood committee}, documents: {zh: [身份证], en: [ID card]}}
        valid_from: 2024-01-01
      - code: device_t
        title: {zh: 紧急呼叫设备, en: Emergency call device}
        summary: {zh: 独居老人免费安装。, en: Free for elders living alone.}
        rule: 'age >= 70 and living_alone and has_device == false'
        benefit: {text: {zh: 免费安装, en: free installation}}
        apply: {where: {zh: 居委会, en: the neighbourhood committee}}
        valid_from: 2024-01-01
      - code: care_t
        title: {zh: 养老服务补贴, en: Home care subsidy}
        summary: {zh: 高龄低收入老人。, en: For residents aged 80 or more on a low income.}
        rule: 'age >= 80 and income_per_head < 3100'
        benefit: {text: {zh: 居家服务, en: home care hours}}
        apply: {where: {zh: 街道, en: the street office}}
        valid_from: 2024-01-01
      - code: young_t
        title: {zh: 青年补贴, en: Youth grant}
        summary: {zh: 青年。, en: For the young.}
        rule: 'age < 30 and income_per_head < 100'
        benefit: {text: {zh: 补贴, en: a grant}}
        apply: {where: {zh: 街道, en: the street office}}
        valid_from: 2024-01-01
"""
EN = "en"


def en(msgid: str) -> str:
    return translate(EN, msgid)


async def _setup(stack, tmp_path):
    await seed_registry(stack.sessions)
    (tmp_path / "catalogue").mkdir()
    (tmp_path / "catalogue" / "t.yaml").write_text(textwrap.dedent(CATALOGUE), encoding="utf-8")
    async with stack.session() as s:
        await pol.load_catalogue(s, tmp_path / "catalogue", datetime.now(UTC))
        await s.commit()


async def _verified(stack, household: str, name: str, first_name: str):
    (code,) = await household_codes(stack.sessions, household)
    user = await stack.client.create_user(first_name, language_code="en")
    await user.send(f"/start inv_{code}")
    await user.press("I agree")
    await user.press(f"I am {name}")
    assert "You are verified" in await texts(user)
    return user


async def _verified_zhao(stack):
    return await _verified(stack, "YC-5-1-102", "赵桂兰", "桂兰")


async def _count(stack, model) -> int:
    async with stack.session() as s:
        return await s.scalar(select(func.count()).select_from(model))


async def test_benefits_asks_two_questions_then_shows_results_with_reasons(stack, tmp_path):
    await _setup(stack, tmp_path)
    zhao = await _verified_zhao(stack)
    seen = []
    await zhao.send("/benefits")
    out = await texts(zhao)
    seen.append(out)
    assert "May we keep your answers" in out
    await zhao.press("Yes, keep my answers")
    out = await texts(zhao)
    seen.append(out)
    assert "Do you already have an emergency call device?" in out  # ties go by name: has_device first
    await zhao.press("No")
    out = await texts(zhao)
    seen.append(out)
    assert "monthly income per person" in out
    await zhao.send("lots")
    assert "Please type a number" in await texts(zhao)  # refused politely, nothing stored
    assert await _count(stack, PolicyAnswer) == 1
    await zhao.send("1 200")
    out = await texts(zhao)
    seen.append(out)
    everything = "\n".join(seen)
    # The registry knows age and living alone: never asked.
    assert en("How old are you? Please type a number.") not in everything
    assert en("Do you live alone?") not in everything
    questions = [m for m in await zhao.bot_messages() if "This answer can decide" in (m["text"] or "")]
    assert len(questions) == 2  # two questions, no more
    assert "Programmes you may qualify for" in out
    for title in ("Meal assistance", "Emergency call device", "Home care subsidy"):
        assert title in out
    assert "Youth grant" not in out and "1 other programme does not apply to you." in out
    assert "you are 88 (80 or more)" in out
    assert "lives alone: yes" in out and "already has an emergency call device: no" in out
    assert "household income per head: 1200 (less than 3100)" in out
    assert "a subsidy per meal: 5 yuan a meal" in out and "Sample data, not advice" in out
    assert await _count(stack, PolicyAnswer) == 2 and await _count(stack, PolicyConsent) == 1
    # Asked again: nothing left to ask, the kept answers count.
    await zhao.send("/benefits")
    out = await texts(zhao)
    assert "Programmes you may qualify for" in out and "?" not in out.split("\n")[0]
    await zhao.press("✅ I have applied: Home care subsidy")
    assert "Noted: you have applied" in await texts(zhao)
    # /forget deletes the answers with the rest.
    await zhao.send("/forget")
    await zhao.press("Yes, delete my data")
    assert await _count(stack, PolicyAnswer) == 0 and await _count(stack, PolicyConsent) == 0


async def test_anonymous_benefits_ask_registry_questions_and_store_nothing(stack, tmp_path):
    await _setup(stack, tmp_path)
    user = await stack.client.create_user("Visitor", language_code="en")
    await user.send("/benefits")
    assert en("How old are you? Please type a number.") in await texts(user)
    await user.send("85")
    out = await texts(user)
    assert "Do you live alone?" in out or "income per person" in out or "emergency call device" in out
    await user.press("Show results now")
    out = await texts(user)
    assert "Meal assistance" in out and "you are 85 (80 or more)" in out
    assert "Nothing you answered was stored" in out
    assert await _count(stack, PolicyAnswer) == 0 and await _count(stack, PolicyConsent) == 0
    # The main menu offers it too.
    await user.send("/menu")
    await user.press("🎁 Benefits for me")
    assert en("How old are you? Please type a number.") in await texts(user)


async def test_staff_push_resident_applies_report_shows_it_and_90_days_hold(stack, tmp_path):
    await _setup(stack, tmp_path)
    zhao = await _verified_zhao(stack)
    staff = await make_staff(stack, lang="en")
    await staff.send("/policy_match meal_t")
    out = await texts(staff)
    # 赵桂兰 (88, on the bot) and 王秀英 (81, not on the bot) qualify; two residents have no birth date.
    assert "Eligible: 2" in out and "Unknown (data missing, never notified): 2" in out
    assert "Not on the bot (contact in person): 1" in out
    await staff.press("📣 Tell 1 residents")
    assert "Notices queued for 1 residents" in await texts(staff)
    notice = await zhao.wait_for_message(lambda m: "Meal assistance" in (m["text"] or ""))
    assert "Dear 赵桂兰" in notice["text"] and "you are 88 (80 or more)" in notice["text"]
    await zhao.press("✅ I have applied")
    assert "noted that you applied" in await texts(zhao)
    async with stack.session() as s:
        assert await s.scalar(select(PolicyCase.status)) == "applied"
    await staff.send("/policy_report meal_t")
    out = await texts(staff)
    assert "eligible 2 · unknown 2 · notified 1 · applied 1 · enrolled 0 · declined 0" in out
    # A second push at once: nobody is told twice (the limit is 90 days), even by a forged button.
    await staff.send("/policy_match meal_t")
    assert "Nobody to tell through the bot right now." in await texts(staff)
    forged = await staff.callback((await staff.last_message())["message_id"], "pp:push:meal_t")
    assert forged
    assert "Notices queued for 0 residents" in await texts(staff)
    assert await _count(stack, PolicyCase) == 1
    # Staff record the enrolment; residents cannot use the staff commands.
    await staff.send("/policy_enrol meal_t 赵桂兰")
    assert "is enrolled in meal_t" in await texts(staff)
    await zhao.send("/policy_match meal_t")
    assert "for committee staff only" in await texts(zhao)


async def test_benefits_speak_chinese(stack, tmp_path):
    await _setup(stack, tmp_path)
    user = await stack.client.create_user("访客", language_code="zh-hans")
    await user.send("/benefits")
    assert translate("zh_Hans", "How old are you? Please type a number.") in await texts(user)
    await user.send("85岁")
    await user.press(translate("zh_Hans", "Show results now"))
    out = await texts(user)
    assert "助餐补贴" in out and "您 85 岁（80 或以上）" in out and "样例数据，非政策建议" in out


async def test_the_policies_tick_follows_up_once_and_not_after_applied(tmp_path):
    clock = PacedClock(datetime(2026, 11, 28, 1, 0, tzinfo=UTC))
    async with running_stack(tmp_path, clock=clock) as stack:
        await _setup(stack, tmp_path)
        zhao = await _verified_zhao(stack)
        wang = await _verified(stack, "DX-3-2-201", "王秀英", "秀英")
        staff = await make_staff(stack, lang="en")
        await staff.send("/policy_match meal_t")
        assert "Eligible: 2" in await texts(staff)
        await staff.press("📣 Tell 2 residents")
        assert "Notices queued for 2 residents" in await texts(staff)
        for user in (zhao, wang):
            await user.wait_for_message(lambda m: "Meal assistance" in body(m))
        await zhao.press("✅ I have applied")
        assert "noted that you applied" in await texts(zhao)
        tick = {name: job for name, job, _trigger in scheduled_ticks(stack.runtime)}["policies"]
        cfg: pol.PolicyConfig = stack.dp["policy_config"]
        assert await tick(stack.runtime, clock()) == 0  # not yet due
        clock.advance(cfg.followup_after + timedelta(minutes=1))
        assert await tick(stack.runtime, clock()) == 1  # 王秀英 only: 赵桂兰 has applied
        assert await tick(stack.runtime, clock()) == 0  # once
        clock.advance(timedelta(days=30))
        assert await tick(stack.runtime, clock()) == 0
        reminder = await wang.wait_for_message(lambda m: "A gentle reminder" in body(m))
        assert "Meal assistance" in body(reminder)
        async with stack.session() as s:
            wang_account = await s.scalar(select(Account.id).where(Account.telegram_id == wang.id))
            followups = [m.account_id for m in await s.scalars(select(OutboxMessage))
                         if m.payload and m.payload.get("message") == "policies.followup"]
        assert followups == [wang_account]
        assert not [m for m in await zhao.bot_messages() if "A gentle reminder" in body(m)]
