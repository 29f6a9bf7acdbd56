"""MLLP both ways: our listener's ACKs, our writer's ACK handling, and third-party peers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.hl7v2 import ack
from ehr_bridge.adapters.hl7v2.ack import Incoming, Problem, parse_ack
from ehr_bridge.adapters.hl7v2.build import Header
from ehr_bridge.adapters.hl7v2.inbox import Inbox
from ehr_bridge.adapters.hl7v2.listener import MllpListener, Receiver
from ehr_bridge.adapters.hl7v2.mllp import FrameReader, MllpClient, frame
from ehr_bridge.adapters.hl7v2.peer import RecordingPeer
from ehr_bridge.adapters.hl7v2.writer import FolderTransport, Hl7Writer, MllpTransport
from ehr_bridge.errors import TerminalError, TransientError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"
REF = "MSH|^~\\&|IAPTUS|RXX|EHR-BRIDGE|IESO01|20261126||REF^I12^REF_I12|C-1|P|2.5\rRF1|A\rPID|1"


def _inbox(tmp_path: Path) -> Inbox:
    inbox = Inbox(tmp_path / "drop", tmp_path / "drop" / "received", settle_seconds=0)
    inbox.ensure()
    return inbox


def _stored(inbox: Inbox) -> list[Path]:
    return sorted(p for p in inbox.drop.iterdir() if p.is_file())


# --- the listener's decisions ------------------------------------------------------------
def test_a_referral_is_stored_before_it_is_acknowledged(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    answer = parse_ack(Receiver(inbox).handle(REF.encode()))
    assert answer is not None and (answer.code, answer.control_id) == ("AA", "C-1")
    (stored,) = _stored(inbox)
    assert stored.read_bytes() == REF.encode()


@pytest.mark.parametrize(
    ("message", "code", "error", "where"),
    [
        (REF.replace("REF^I12", "ADT^A04"), "AR", ack.UNSUPPORTED_MESSAGE_TYPE, "MSH-9"),
        (REF.replace("REF^I12", "REF^I13"), "AR", ack.UNSUPPORTED_EVENT_CODE, "MSH-9"),
        (REF.replace("|C-1|", "||"), "AE", ack.REQUIRED_FIELD_MISSING, "MSH-10"),
        (REF.replace("\rPID|1", ""), "AE", ack.SEGMENT_SEQUENCE_ERROR, None),
        ("PID|1|garbage", "AE", ack.REQUIRED_FIELD_MISSING, None),
        (REF + "\r" + REF, "AE", ack.SEGMENT_SEQUENCE_ERROR, None),
        (REF + "|SMITH^JO\rHN", "AE", ack.SEGMENT_SEQUENCE_ERROR, None),  # line 4: not a segment
        (REF + "|SMITH^\x00", "AE", ack.REQUIRED_FIELD_MISSING, "PID-2"),  # a control character
        (REF.replace("^~\\&", "^~\\^", 1), "AE", ack.REQUIRED_FIELD_MISSING, "MSH-2"),
        ((REF + "|Siân").encode("latin-1"), "AE", ack.REQUIRED_FIELD_MISSING, "MSH-18"),
    ],
)
def test_a_message_we_cannot_take_is_answered_ae_or_ar_and_not_stored(
    tmp_path: Path, message: str | bytes, code: str, error: str, where: str | None
) -> None:
    inbox = _inbox(tmp_path)
    data = message.encode() if isinstance(message, str) else message
    answer = parse_ack(Receiver(inbox).handle(data))
    assert answer is not None
    assert (answer.code, answer.error_code, answer.error_where) == (code, error, where)
    assert _stored(inbox) == []


def test_a_line_that_is_not_a_segment_is_named_in_the_ack_text(tmp_path: Path) -> None:
    reply = Receiver(_inbox(tmp_path)).handle((REF + "|SMITH^JO\rHN").encode())
    assert "MSA|AE||line 4: not a segment" in reply and "SMITH" not in reply


def test_a_storage_failure_is_answered_ar_so_the_sender_retries(tmp_path: Path) -> None:
    class Full(Inbox):
        def accept(self, data: bytes, prefix: str = "mllp") -> Path:
            raise OSError(28, "No space left on device")

    answer = parse_ack(Receiver(Full(tmp_path, tmp_path)).handle(REF.encode()))
    assert answer is not None and answer.code == "AR"
    assert answer.error_code == ack.APPLICATION_INTERNAL_ERROR


def test_our_ack_echoes_the_header_and_escapes_what_it_copies() -> None:
    incoming = Incoming("IAPTUS", "R|XX", "EHR", "IESO01", "REF^I12", "C^1", "P", "2.4")
    text = ack.build_ack(incoming, Problem(ack.REQUIRED_FIELD_MISSING, "PID", 3, "a|b"))
    msh, msa, err = text.strip("\r").split("\r")
    assert msh.split("|")[2:6] == ["EHR", "IESO01", "IAPTUS", "R\\F\\XX"]
    assert msh.split("|")[8] == "ACK^I12^ACK" and msh.split("|")[11] == "2.4"
    assert msa == "MSA|AE|C\\S\\1|a\\F\\b"
    assert err == "ERR||PID^1^3|101^Required field missing^HL70357|E"


def test_parse_ack_reads_old_style_err_and_refuses_non_acks() -> None:
    old = "MSH|^~\\&|A|B|||1||ACK|9|P|2.3\rMSA|AE|X-1\rERR|PID^1^3^101&Required"
    assert parse_ack(old) == ack.Ack("AE", "X-1", "101", "PID-3")
    assert parse_ack("MSH|^~\\&|A|B|||1||ADT^A01|9|P|2.5\rPID|1") is None
    assert parse_ack("not hl7") is None


# --- third-party sender: python-hl7's mllp_send ------------------------------------------
@pytest.fixture
def listener(tmp_path: Path) -> Iterator[MllpListener]:
    server = MllpListener(("127.0.0.1", 0), Receiver(_inbox(tmp_path)), idle_timeout=5).start()
    yield server
    server.stop()


def _mllp_send(port: int, path: Path) -> list[str]:
    script = shutil.which("mllp_send", path=str(Path(sys.executable).parent))
    assert script, "python-hl7 (hl7 on PyPI) provides mllp_send"
    result = subprocess.run(
        [script, "--loose", "--file", str(path), "--port", str(port), "127.0.0.1"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    return [line for line in result.stdout.decode().splitlines() if "MSA|" in line]


def test_python_hl7_mllp_send_delivers_to_our_listener(
    listener: MllpListener, tmp_path: Path
) -> None:
    batch = tmp_path / "two.hl7"  # mllp_send --loose is not BOM-aware: drop it first
    texts = [(FIXTURES / n).read_bytes().removeprefix(b"\xef\xbb\xbf") for n in _UK_FILES]
    batch.write_bytes(b"".join(texts))
    answers = _mllp_send(listener.port, batch)
    assert [a.split("|")[1] for a in answers] == ["AA", "AA"]
    assert len(_stored(listener.receiver.inbox)) == 2
    assert listener.receiver.counts == {"AA": 2}


_UK_FILES = ("uk_REF-I12-01-gp.hl7", "uk_REF-I12-02-self.hl7")


def test_python_hl7_mllp_send_gets_ar_for_a_lab_result(listener: MllpListener) -> None:
    answers = _mllp_send(listener.port, FIXTURES / "msftconv_LAB-ORU-1.hl7")
    assert answers and answers[0].split("|")[1] == "AR"
    assert _stored(listener.receiver.inbox) == []


# --- our writer against hl7apy's MLLP server (closes after every ACK) ---------------------
def _item(reference: str, kind: str = "assessment") -> WriteItem:
    payloads = {
        "assessment": {"tool_code": "720433000", "score": 9, "completed_at": "2026-11-10T19:35Z"},
        "clinical_note": {"authored_at": "2026-11-10T19:35:00Z", "text": "note"},
    }
    payload = {**payloads[kind], "client_reference": reference, "referral_id": "SR1"}
    return WriteItem(kind, "SR1", reference, payload)


def test_the_writer_reconnects_to_a_peer_that_closes_after_each_ack() -> None:
    peer = RecordingPeer().start()
    try:
        client = MllpClient("127.0.0.1", peer.port, timeout=5, keep_alive=True)
        writer = Hl7Writer(Header(), MllpTransport(client))
        receipts = [writer.write(_item(f"ref-{n}")) for n in range(3)]
        again = writer.write(_item("ref-1"))
        note = writer.write(_item("ref-note", "clinical_note"))
    finally:
        peer.stop()
    assert [r.trust_id for r in receipts] == ["ref-0", "ref-1", "ref-2"]
    assert not any(r.already_present for r in receipts)
    assert again.already_present and again.trust_id == "ref-1"
    assert not note.already_present
    assert peer.deliveries == 5 and len(peer.messages("ORU^R01")) == 3
    assert writer.find(_item("ref-1")) is None  # no find_by_reference: HL7 cannot be asked


@pytest.mark.parametrize(("refuse", "error"), [("AR", TransientError), ("AE", TerminalError)])
def test_ar_is_retried_later_and_ae_is_final(refuse: str, error: type[Exception]) -> None:
    peer = RecordingPeer(refuse=refuse).start()
    try:
        writer = Hl7Writer(Header(), MllpTransport(MllpClient("127.0.0.1", peer.port)))
        with pytest.raises(error) as caught:
            writer.write(_item("ref-x"))
    finally:
        peer.stop()
    assert "HL7 error 207" in str(caught.value)
    assert not isinstance(caught.value, TransientError) or not caught.value.ambiguous


# --- fault cases against a scripted peer -------------------------------------------------
Behaviour = Callable[[socket.socket, bytes], bool]  # returns False to close the connection


@contextmanager
def scripted(behaviour: Behaviour) -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=_serve_one, args=(conn, behaviour), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def _serve_one(conn: socket.socket, behaviour: Behaviour) -> None:
    reader = FrameReader(conn)
    with conn:
        while True:
            try:
                message = reader.next()
            except OSError:
                return
            if message is None or not behaviour(conn, message):
                return


def _ack_for(message: bytes, code: str = "AA", control: str | None = None) -> bytes:
    control_id = message.split(b"\r")[0].split(b"|")[9].decode()
    text = f"MSH|^~\\&|T|T|||1||ACK|9|P|2.5\rMSA|{code}|{control or control_id}\r"
    return frame(text.encode())


def test_no_answer_in_time_is_an_ambiguous_transient_error() -> None:
    with scripted(lambda conn, msg: True) as port:
        writer = MllpTransport(MllpClient("127.0.0.1", port, timeout=0.3))
        with pytest.raises(TransientError) as caught:
            writer.send("assessment", "ref-1", "MSH|^~\\&|A|||||||ref-1|P|2.5\r")
    assert caught.value.ambiguous


def test_an_ack_for_another_message_is_ambiguous_and_drops_the_connection() -> None:
    def wrong(conn: socket.socket, message: bytes) -> bool:
        conn.sendall(_ack_for(message, control="someone-else"))
        return True

    with scripted(wrong) as port:
        client = MllpClient("127.0.0.1", port, timeout=2)
        with pytest.raises(TransientError) as caught:
            MllpTransport(client).send("assessment", "ref-1", "MSH|^~\\&|A|||||||ref-1|P|2.5\r")
    assert caught.value.ambiguous and client._sock is None


def test_a_peer_that_closes_without_answering_is_ambiguous() -> None:
    with scripted(lambda conn, msg: False) as port:
        client = MllpClient("127.0.0.1", port, timeout=2)
        with pytest.raises(TransientError) as caught:
            MllpTransport(client).send("assessment", "ref-1", "MSH|^~\\&|A|||||||ref-1|P|2.5\r")
    assert caught.value.ambiguous


def test_a_kept_connection_is_reused_and_an_idle_close_is_survived() -> None:
    served: list[int] = []

    def answer_twice(conn: socket.socket, message: bytes) -> bool:
        served.append(1)
        conn.sendall(_ack_for(message))
        return len(served) != 2  # close after the second message, idle, without warning

    with scripted(answer_twice) as port:
        client = MllpClient("127.0.0.1", port, timeout=2, keep_alive=True)
        transport = MllpTransport(client)
        for n in range(4):
            receipt = transport.send("assessment", f"r{n}", f"MSH|^~\\&|A|||||||r{n}|P|2.5\r")
            assert receipt.trust_id == f"r{n}"
    assert len(served) == 4


def test_nobody_listening_is_transient_and_not_ambiguous() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    client = MllpClient("127.0.0.1", port, timeout=1)
    with pytest.raises(TransientError) as caught:
        client.exchange(b"MSH|^~\\&|A")
    assert not caught.value.ambiguous


# --- folder target -----------------------------------------------------------------------
def test_the_folder_target_writes_each_reference_once(tmp_path: Path) -> None:
    writer = Hl7Writer(Header(), FolderTransport(tmp_path))
    first = writer.write(_item("ref-1"))
    second = writer.write(_item("ref-1"))
    assert not first.already_present and second.already_present
    (written,) = tmp_path.iterdir()
    assert written.name == "assessment-ref-1.hl7"
    assert written.read_bytes().startswith(b"MSH|^~\\&|EHR-BRIDGE|")


def test_a_writer_without_a_send_target_refuses_with_terminal_error() -> None:
    with pytest.raises(TerminalError):
        Hl7Writer(Header(), None).write(_item("ref-1"))
