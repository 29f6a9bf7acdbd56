"""AES-GCM sealing of stored payloads: round trip, key ids, binding to the row, tamper."""

from __future__ import annotations

import base64

import pytest

from ehr_bridge.errors import ConfigError
from ehr_bridge.security import IntegrityError, KeyRing, PayloadCipher, generate_key
from ehr_bridge.security.crypto import PREFIX, key_id_of, resource_aad

TEXT = '{"name":[{"family":"Smith"}],"note":"Felt low most days"}'


def test_a_sealed_payload_opens_with_its_row_and_hides_the_text() -> None:
    cipher = PayloadCipher(KeyRing.parse(generate_key()))
    aad = resource_aad("Patient", "p1")
    stored, key_id = cipher.seal(TEXT, aad)
    assert key_id == cipher.active_id and stored.startswith(PREFIX)
    assert "Smith" not in stored and "Felt low" not in stored
    assert cipher.open(stored, key_id, aad) == TEXT
    again, _ = cipher.seal(TEXT, aad)
    assert again != stored  # a fresh nonce every time


def test_a_payload_moved_to_another_row_or_edited_does_not_open() -> None:
    cipher = PayloadCipher(KeyRing.parse(generate_key()))
    stored, key_id = cipher.seal(TEXT, resource_aad("Patient", "p1"))
    with pytest.raises(IntegrityError) as moved:
        cipher.open(stored, key_id, resource_aad("Patient", "p2"))
    assert "p2" in str(moved.value) and "Smith" not in str(moved.value)
    raw = bytearray(base64.urlsafe_b64decode(stored.removeprefix(PREFIX)))
    raw[-1] ^= 1
    edited = PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(IntegrityError):
        cipher.open(edited, key_id, resource_aad("Patient", "p1"))
    with pytest.raises(IntegrityError):
        cipher.open("v1.not-base64!", key_id, resource_aad("Patient", "p1"))


def test_every_key_of_the_ring_decrypts_and_the_first_encrypts() -> None:
    old, new = generate_key(), generate_key()
    sealed_old, old_id = PayloadCipher(KeyRing.parse(old)).seal(TEXT, "a")
    ring = KeyRing.parse(f"# rotated in today\n{new}\n{old}\n")
    cipher = PayloadCipher(ring)
    assert ring.ids == [cipher.active_id, old_id] and cipher.active_id != old_id
    assert cipher.open(sealed_old, old_id, "a") == TEXT
    assert cipher.seal(TEXT, "a")[1] == cipher.active_id
    with pytest.raises(ConfigError, match=old_id):
        PayloadCipher(KeyRing.parse(new)).open(sealed_old, old_id, "a")


def test_keys_separated_by_commas_or_spaces_and_padding_is_optional() -> None:
    a, b = generate_key(), generate_key()
    assert KeyRing.parse(f"{a.rstrip('=')}, {b}").ids == KeyRing.parse(f"{a}\n{b}").ids


@pytest.mark.parametrize("bad", ["", "# only a comment", "c2hvcnQ=", "not base64 at all!!"])
def test_a_bad_keyring_names_the_key_position_never_its_text(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        KeyRing.parse(bad, source="security.encryption_key_env")
    message = str(caught.value)
    assert "c2hvcnQ" not in message and "base64 at all" not in message


def test_without_a_ring_payloads_pass_through_as_plain_text() -> None:
    cipher = PayloadCipher()
    assert not cipher.enabled and cipher.seal(TEXT, "a") == (TEXT, None)
    assert cipher.open(TEXT, None, "a") == TEXT


def test_repr_names_key_ids_never_keys() -> None:
    key = generate_key()
    ring = KeyRing.parse(key)
    for text in (repr(ring), str(ring), repr(PayloadCipher(ring))):
        assert key not in text and key[:12] not in text
        assert key_id_of(base64.urlsafe_b64decode(key)) in text
