"""``ehr-bridge doctor``: is this installation able to run, and what to fix if not.

For the shared setup and then each connection it checks, without changing anything:

- ``config``: the file reads and validates; each connection builds as the daemon builds it
- ``keys``: the keyring loads and its file is the daemon's alone
- ``database``: reachable, the schema at this version's head, the keyring opens it
- ``disk``: free space where the state, the log and the provider folder are
- ``systemd``: the unit does not restart a configuration error, and may write its folders
- ``mapping``: the mapping loads and ``mapping check`` finds no error
- ``token``: where each side's credentials come from, there and private
- ``tls``: https (plain http only to this machine), CA bundle and client certificate load
- ``trust``: one cheap authenticated read (or a TCP connect to an HL7 v2 peer)
- ``provider``: its folder and layout, or one authenticated read of its FHIR server

Each finding is a ``Check`` (PASS, WARN or FAIL, with the fix); no finding holds a secret
or anything a trust or provider answered beyond a status and a code.
"""

from ehr_bridge.observability.doctor.model import SHARED, Check, Report, Status
from ehr_bridge.observability.doctor.network import DEFAULT_TIMEOUT
from ehr_bridge.observability.doctor.run import run_doctor

__all__ = ["DEFAULT_TIMEOUT", "SHARED", "Check", "Report", "Status", "run_doctor"]
