"""The synthetic therapy platform, keeping its records on a FHIR server instead of a folder.

For the ``fhir-provider`` adapter's end-to-end tests: the same courses as
``SyntheticPlatform`` (same seed, same sessions, notes and scores), but the platform reads
the referrals ehr-bridge PUT on its FHIR server and stores each session Bundle there as a
``collection`` Bundle resource, oldest first, so ``meta.lastUpdated`` order is clinical
order. It works on the server's store directly, as a platform works on its own database.

Internally it drives ``SyntheticPlatform`` through a private work folder: referrals are
exported into ``<workdir>/referrals/`` and each session file the platform writes is
uploaded and moved to ``<workdir>/sessions/uploaded/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ehr_bridge.security.files import private_dir, write_private
from ehr_bridge.sim.fhir_store import FhirStore, JsonDict
from ehr_bridge.sim.platform import ExpectedArtefact, PlatformStepResult, SyntheticPlatform


class FhirPlatform:
    """Runs the synthetic platform's courses against a FHIR server's store."""

    def __init__(self, store: FhirStore, workdir: Path, *, seed: int = 1) -> None:
        self.store = store
        self.platform = SyntheticPlatform(workdir, seed=seed)
        self._uploaded = self.platform.sessions_dir / "uploaded"
        private_dir(self._uploaded)

    def step(self) -> PlatformStepResult:
        """Take new or changed referrals, run the platform, and store what it wrote."""
        self._export_referrals()
        result = self.platform.step()
        self._upload_sessions()
        return result

    def expected_artefacts(self) -> list[ExpectedArtefact]:
        """Everything the platform has produced so far (see ``SyntheticPlatform``)."""
        return self.platform.expected_artefacts()

    def _export_referrals(self) -> None:
        for request in self.store.all_of("ServiceRequest"):
            patient_id = str(request.get("subject", {}).get("reference", "")).split("/")[-1]
            patient = self.store.read("Patient", patient_id)
            resources = [r for r in (patient, request) if r is not None]
            bundle: JsonDict = {
                "resourceType": "Bundle",
                "id": request["id"],
                "type": "collection",
                "entry": [{"resource": r} for r in resources],
            }
            target = self.platform.referrals_dir / f"{request['id']}.json"
            data = json.dumps(bundle, sort_keys=True, indent=2)
            if not target.exists() or target.read_text("utf-8") != data:
                tmp = target.with_name(target.name + ".tmp")
                write_private(tmp, data)
                os.replace(tmp, target)

    def _upload_sessions(self) -> None:
        files = [p for p in self.platform.sessions_dir.glob("*.json") if p.is_file()]
        for path in sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name)):
            self.store.put(json.loads(path.read_text("utf-8")))
            os.replace(path, self._uploaded / path.name)
