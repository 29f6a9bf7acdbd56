"""`status` reads each flow's latest run without loading the connection's history."""

from __future__ import annotations

from pathlib import Path

from ehr_bridge.store import Store, utcnow


def test_last_runs_is_the_latest_of_each_flow_of_the_connection(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    for n in range(30):
        for flow in ("pull", "deliver", "collect"):
            store.record_run("a", flow, utcnow(), {"n": n})
        store.record_run("b", "pull", utcnow(), {"n": 100 + n})
    store.record_run("a", "push", utcnow(), {}, error="boom")
    store.record_run("a", "pull", utcnow(), {"n": 30})

    latest = store.last_runs("a")

    assert sorted(latest) == ["collect", "deliver", "pull", "push"]
    assert latest["pull"].counts == '{"n":30}'
    assert latest["collect"].counts == '{"n":29}'
    assert latest["push"].ok is False
    assert store.last_runs("b")["pull"].counts == '{"n":129}'
    assert store.last_runs("nobody") == {}
    error = store.last_error("a")
    assert error is not None and error.flow == "push"
