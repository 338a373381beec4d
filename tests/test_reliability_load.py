"""Load: 200 users compiled 8 at a time against a fake LM that is slow (0-5 ms a call) and fails
~10% of its calls. Every user must end in a known state, with an error if it failed, and every
persona on disk must read back. (benchmarks/bench_load.py runs the same load and times it.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from personaagent.optimizers.many_users import finished_users
from personaagent.persona import PersonaBook

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from bench_load import STATUSES, run_load  # noqa: E402

NUM_USERS = 200


def test_two_hundred_users_under_flaky_lm_all_end_in_a_known_state(tmp_path):
    records, ws, _ = run_load(tmp_path, users=NUM_USERS, threads=8, failure_rate=0.1, max_latency=0.005, seed=7)
    with ws:
        assert [r.user_id for r in records] == [f"user-{i:04d}" for i in range(NUM_USERS)]
        assert {r.status for r in records} <= set(STATUSES)
        failed = [r for r in records if r.status == "failed"]
        assert all(r.error for r in failed)
        assert all(r.error is None for r in records if r.status != "failed")
        # With 10% of calls failing, most users still get through and some do not: both paths ran.
        assert 0 < len(failed) < NUM_USERS // 2
        assert sum(r.status == "edited" for r in records) > NUM_USERS // 2

        book = PersonaBook(ws.settings.personas_dir)
        for record in records:
            versions = book.history(record.user_id)  # every version file parses
            if record.status != "failed":
                assert versions and versions[-1].version == record.persona_version
            assert {p.user_id for p in versions} <= {record.user_id}

        # Finished users are in the manifest exactly once; failed ones are left for a rerun.
        [path] = ws.settings.runs_dir.glob("*/finished.jsonl")
        manifest = finished_users(path)
        assert set(manifest) == {r.user_id for r in records if r.status != "failed"}
        assert len(path.read_text(encoding="utf-8").splitlines()) == len(manifest)
