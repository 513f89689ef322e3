"""`communitybot polls …` as scripts use it: create prints the id, results --json has the documented
keys, refusals are one clear line on stderr, close closes once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from tests.helpers import cli
from tests.seed import DXYC_CSV

CLOSES = (datetime.now() + timedelta(days=30)).strftime("%Y-%m-%d %H:%M")
KEYS = {"id", "status", "unit", "rule", "eligible_units", "voted_units", "eligible_area", "voted_area", "options",
        "quorum_met", "passed"}


async def test_polls_create_results_close(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": "", "SECRET_KEY": "cli-test-key", "DEFAULT_LOCALE": "en"}
    assert (await cli("regions", "demo", env=env)).returncode == 0
    registry = tmp_path / "dxyc.csv"
    registry.write_text(DXYC_CSV, encoding="utf-8")
    assert (await cli("registry", "import", "--committee", "DXYC", str(registry), env=env)).returncode == 0
    out = await cli("polls", "create", "--committee", "DXYC", "--question", "Paint the gate green?", "--option", "Yes",
                    "--option", "No", "--unit", "household", "--eligible", 'building == "3"', "--quorum", "1/2",
                    "--closes", CLOSES, env=env)
    assert out.returncode == 0, out.stderr
    poll_id = int(out.stdout.strip())
    out = await cli("polls", "results", str(poll_id), "--json", env=env)
    data = json.loads(out.stdout)
    assert set(data) >= KEYS
    # Building 3 of DXYC: one household (DX-3-2-201, two residents).
    assert (data["id"], data["status"], data["unit"], data["eligible_units"], data["voted_units"]) == \
        (poll_id, "open", "household", 1, 0)
    assert [o["text"] for o in data["options"]] == ["Yes", "No"] and data["quorum_met"] is False
    bad = await cli("polls", "create", "--committee", "DXYC", "--question", "Lift?", "--option", "Yes", "--option",
                    "No", "--rule", "civil-code-major", "--closes", CLOSES, env=env)
    assert bad.returncode == 2 and "owner unit" in bad.stderr
    bad = await cli("polls", "create", "--committee", "DXYC", "--question", "Lift?", "--option", "Yes", "--option",
                    "No", "--closes", "tomorrow", env=env)
    assert bad.returncode == 2 and "YYYY-MM-DD HH:MM" in bad.stderr
    assert (await cli("polls", "close", str(poll_id), env=env)).returncode == 0
    assert json.loads((await cli("polls", "results", str(poll_id), "--json", env=env)).stdout)["status"] == "closed"
    again = await cli("polls", "close", str(poll_id), env=env)
    assert again.returncode == 2 and "closed" in again.stderr
