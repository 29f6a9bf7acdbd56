"""One huge field cannot blow up memory: a 9.5 MB name is refused early, the rest go on.

A trust answer under the 10 MiB body limit may still hold a single 9.5 MB string. The
pull runs in a process of its own against a loopback trust serving such a page, and its
peak RSS is read from the operating system (VmHWM): under 300 MB, with the oversized referral
quarantined naming the field and the others stored. (It peaked at 1.2 GB when the body's
depth check kept a regex backtracking frame per byte.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path
    from ehr_bridge.config import load_config
    from ehr_bridge.sim import TrustSimulator
    from ehr_bridge.store import Store
    from ehr_bridge.sync.connection import build_connections
    from ehr_bridge.sync.pull import pull

    def peak_mb():
        # VmHWM of this process image: ru_maxrss would carry over the high-water mark of
        # the forking pytest process across exec on Linux
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    work, mapping = Path(sys.argv[1]), sys.argv[2]
    exported = TrustSimulator(seed=7, referrals=12).export()["referrals"]
    records = [e["referral"] for e in exported if e["referral"]["referred_on_to"] == "IESO01"]
    records = records[:3]
    patient = {**records[1]["patient"], "family_name": "A" * 9_500_000}
    records[1] = {**records[1], "patient": patient}
    body = json.dumps({"items": records, "next_page_token": None}).encode()
    del records, patient

    class Trust(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trust)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (work / "token").write_text("t")
    (work / "ehr-bridge.toml").write_text(f'''
    [database]
    url = "sqlite:///{work}/state.db"
    [[connection]]
    name = "huge-field"
    mapping = "{mapping}"
    test_connection = true
    [connection.provider_org]
    code = "IESO01"
    [connection.trust]
    adapter = "iaptus"
    base_url = "http://127.0.0.1:{server.server_port}/api/v1"
    token_file = "token"
    read_attempts = 1
    [connection.provider]
    adapter = "folder"
    path = "provider"
    ''')
    config = load_config(work / "ehr-bridge.toml")
    (conn,) = build_connections(config)
    store = Store(config.database_url())
    counts = pull(conn, store)
    (entry,) = store.quarantine_rows(connection=conn.name)
    print(json.dumps({
        "body_bytes": len(body),
        "stored": counts.stored,
        "field": entry.field,
        "code": entry.code,
        "peak_mb": peak_mb(),
    }))
    """
)


def test_a_huge_string_in_one_referral_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(ROOT / "mappings" / "iaptus.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["body_bytes"] < 10 * 1024 * 1024  # under the default body limit
    assert (figures["stored"], figures["field"], figures["code"]) == (
        2,
        "patient.family_name",
        "unfit_value",
    )
    assert figures["peak_mb"] < 300, figures
    assert "AAAAAAAA" not in (tmp_path / "state.db").read_bytes().decode("latin-1")
