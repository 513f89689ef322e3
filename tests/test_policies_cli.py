"""`communitybot policies …` as scripts use it: load (all or nothing), list --json, match --json, push
(at most once per 90 days), enrolments import."""

from __future__ import annotations

import json

from tests.helpers import ROOT, cli
from tests.seed import DXYC_CSV

SAMPLE = ROOT / "policies" / "sample"


async def test_policies_load_list_match_push_and_import(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": "", "SECRET_KEY": "cli-test-key", "DEFAULT_LOCALE": "en"}
    assert (await cli("regions", "demo", env=env)).returncode == 0
    registry = tmp_path / "dxyc.csv"
    registry.write_text(DXYC_CSV, encoding="utf-8")
    out = await cli("registry", "import", "--committee", "DXYC", str(registry), env=env)
    assert out.returncode == 0, out.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text((SAMPLE / "elderly.yaml").read_text(encoding="utf-8").replace(
        "rule: 'age >= 80 or (age >= 60 and living_alone)'", "rule: 'age >= 80 or (age >= 60 and lving_alone)'"),
        encoding="utf-8")
    (bad / "fields.yaml").write_text((SAMPLE / "fields.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    out = await cli("policies", "load", str(bad), env=env)
    column = "age >= 80 or (age >= 60 and lving_alone)".index("lving_alone") + 1
    assert out.returncode == 1 and f"policy meal_assistance: rule: column {column}: " in out.stderr
    assert "nothing loaded" in out.stderr
    listed = json.loads((await cli("policies", "list", "--json", env=env)).stdout)
    assert listed == []
    out = await cli("policies", "load", str(SAMPLE), env=env)
    assert out.returncode == 0, out.stderr
    listed = json.loads((await cli("policies", "list", "--json", env=env)).stdout)
    assert {"code", "title", "rule", "active"} <= set(listed[0])
    meal = next(p for p in listed if p["code"] == "meal_assistance")
    assert meal["rule"] == "age >= 80 or (age >= 60 and living_alone)" and meal["active"] is True
    out = await cli("policies", "match", "meal_assistance", "--committee", "DXYC", "--json", env=env)
    assert out.returncode == 0, out.stderr
    match = json.loads(out.stdout)
    assert (match["eligible"], match["unknown"], match["enrolled"], match["eligible_not_enrolled"]) == (2, 2, 0, 2)
    out = await cli("policies", "push", "meal_assistance", "--committee", "DXYC", env=env)
    assert out.returncode == 0 and out.stdout.startswith("pushed 0;")  # nobody of DXYC is on the bot yet
    sheet = tmp_path / "outcomes.csv"
    sheet.write_text("policy,name,room,status,reason\nmeal_assistance,赵桂兰,5-1-102,enrolled,\n"
                     "meal_assistance,无名,1-1-101,enrolled,\n", encoding="utf-8")
    out = await cli("policies", "enrolments", "import", "--committee", "DXYC", str(sheet), env=env)
    assert "recorded 1, unchanged 0, rejected 1" in out.stdout and "line 3" in out.stdout
    match = json.loads((await cli("policies", "match", "meal_assistance", "--committee", "DXYC", "--json",
                                  env=env)).stdout)
    assert (match["enrolled"], match["eligible_not_enrolled"]) == (1, 1)
    out = await cli("policies", "match", "nope", "--committee", "DXYC", "--json", env=env)
    assert out.returncode == 2 and "nope" in out.stderr
