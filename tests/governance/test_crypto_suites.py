"""The suite interface: envelopes, encryption, signatures and key formats."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.governance.crypto import (
    DecryptionFailed,
    EncryptedEnvelope,
    EnvelopeInvalid,
    KeyInvalid,
    SignatureEnvelope,
    SignatureInvalid,
    _der,
    get_suite,
    load_encrypted_envelope,
    load_envelope,
    load_signature_envelope,
    load_signing_key,
    load_verifying_key,
    open_envelope,
    sm2,
)
from waggle.governance.crypto.sm2 import SM2_P256, Sm2PrivateKey, Sm2PublicKey

SUITE_NAMES = ["gm", "intl"]
PLAINTEXT = "客户：华为技术有限公司；电话 0755-28780808".encode()
CONTEXT = b"accounts.phone#42"
SM2_KEY = Sm2PrivateKey.generate()


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_encrypt_then_decrypt_returns_the_plaintext_and_names_everything(name):
    """An envelope round-trips through JSON and names suite, cipher, key and nonce."""
    suite = get_suite(name)
    key = suite.generate_secret_key()

    text = suite.encrypt(key, PLAINTEXT, associated_data=CONTEXT).to_json()
    envelope = load_envelope(text)

    assert isinstance(envelope, EncryptedEnvelope)
    assert suite.decrypt(key, envelope, associated_data=CONTEXT) == PLAINTEXT
    document = json.loads(text)
    assert sorted(document) == ["alg", "ct", "kid", "kind", "nonce", "suite", "v"]
    assert (document["suite"], document["alg"], document["kid"]) == (
        name,
        suite.cipher_algorithm,
        key.key_id,
    )
    assert len(base64.b64decode(document["nonce"])) == 12


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_each_encryption_draws_a_fresh_nonce(name):
    """Encrypting the same plaintext twice gives different nonces and ciphertexts."""
    suite = get_suite(name)
    key = suite.generate_secret_key()

    first, second = (suite.encrypt(key, PLAINTEXT) for _ in range(2))

    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_decryption_fails_when_ciphertext_nonce_or_associated_data_change(name):
    """Any altered byte of ciphertext or nonce, or other associated data, fails."""
    suite = get_suite(name)
    key = suite.generate_secret_key()
    envelope = suite.encrypt(key, PLAINTEXT, associated_data=CONTEXT)
    flipped = bytes([envelope.ciphertext[0] ^ 1]) + envelope.ciphertext[1:]
    other_nonce = bytes([envelope.nonce[0] ^ 1]) + envelope.nonce[1:]

    attempts = [
        (replace(envelope, ciphertext=flipped), CONTEXT),
        (replace(envelope, nonce=other_nonce), CONTEXT),
        (envelope, b"accounts.phone#43"),
    ]

    for altered, associated in attempts:
        with pytest.raises(DecryptionFailed):
            suite.decrypt(key, altered, associated_data=associated)


def test_an_envelope_cannot_be_opened_as_another_suite_algorithm_or_key():
    """Suite, algorithm and key id in the envelope are checked before decrypting."""
    gm, intl = get_suite("gm"), get_suite("intl")
    key = gm.generate_secret_key()
    envelope = gm.encrypt(key, PLAINTEXT)

    with pytest.raises(EnvelopeInvalid, match="suite 'gm', not 'intl'"):
        intl.decrypt(intl.generate_secret_key(), envelope)
    with pytest.raises(EnvelopeInvalid, match="algorithm 'AES-256-GCM'"):
        gm.decrypt(key, replace(envelope, algorithm="AES-256-GCM"))
    with pytest.raises(EnvelopeInvalid, match="made with key"):
        gm.decrypt(gm.generate_secret_key(), envelope)


def test_the_envelope_header_is_bound_into_the_associated_data():
    """A header rewritten to another key id of the same key still fails the tag."""
    gm = get_suite("gm")
    key = gm.generate_secret_key()
    envelope = gm.encrypt(key, PLAINTEXT)
    twin = replace(key, key_id="0" * 32)

    with pytest.raises(DecryptionFailed):
        gm.decrypt(twin, replace(envelope, key_id=twin.key_id))


def test_open_envelope_picks_the_key_and_suite_the_envelope_names():
    """With old and new keys of both suites at hand, the named one decrypts."""
    keys = [get_suite(name).generate_secret_key() for name in ("gm", "intl", "gm")]
    stored = get_suite("intl").encrypt(keys[1], PLAINTEXT, associated_data=CONTEXT)

    opened = open_envelope(stored.to_json(), keys, associated_data=CONTEXT)

    assert opened == PLAINTEXT
    with pytest.raises(EnvelopeInvalid, match="no key with id"):
        open_envelope(stored, [keys[0], keys[2]], associated_data=CONTEXT)


def test_typed_loaders_refuse_the_other_kind_of_envelope():
    """A signature is not accepted where a ciphertext is expected, and back."""
    gm = get_suite("gm")
    encrypted = gm.encrypt(gm.generate_secret_key(), PLAINTEXT).to_json()
    signed = gm.sign(SM2_KEY, PLAINTEXT).to_json()

    assert load_encrypted_envelope(encrypted).suite == "gm"
    assert load_signature_envelope(signed).distinguishing_id == "1234567812345678"
    with pytest.raises(EnvelopeInvalid, match="expected kind 'encrypted'"):
        load_encrypted_envelope(signed)
    with pytest.raises(EnvelopeInvalid, match="expected kind 'signature'"):
        load_signature_envelope(encrypted)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not a JSON document"),
        ('{"v": "waggle-envelope/2", "kind": "encrypted"}', "field 'v'"),
        ('{"v": "waggle-envelope/1", "kind": "other"}', "field 'kind'"),
        ('{"v": "waggle-envelope/1", "kind": "signature", "suite": "gm"}', "missing"),
    ],
)
def test_malformed_envelopes_are_refused_with_the_reason(text, reason):
    """Bad JSON, another version, an unknown kind or missing fields are refused."""
    with pytest.raises(EnvelopeInvalid, match=reason):
        load_envelope(text)


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_signature_envelopes_verify_and_name_suite_algorithm_key_and_id(name):
    """A signature envelope round-trips and verifies; SM2 ones carry the ID."""
    suite = get_suite(name)
    key = suite.generate_signing_key()

    envelope = load_envelope(suite.sign(key, PLAINTEXT).to_json())

    assert isinstance(envelope, SignatureEnvelope)
    suite.verify(key.public_key(), PLAINTEXT, envelope)
    assert envelope.suite == name
    assert envelope.key_id == suite.fingerprint(key.public_key())
    expected_id = "1234567812345678" if name == "gm" else None
    assert envelope.distinguishing_id == expected_id


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_signature_envelopes_refuse_other_messages_keys_and_ids(name):
    """Another message, another key or another SM2 ID is refused."""
    suite = get_suite(name)
    key = suite.generate_signing_key()
    envelope = suite.sign(key, PLAINTEXT)

    with pytest.raises(SignatureInvalid):
        suite.verify(key.public_key(), PLAINTEXT + b".", envelope)
    with pytest.raises(EnvelopeInvalid, match="made by"):
        suite.verify(suite.generate_signing_key().public_key(), PLAINTEXT, envelope)
    with pytest.raises(EnvelopeInvalid, match="signer ID"):
        suite.verify(
            key.public_key(), PLAINTEXT, replace(envelope, distinguishing_id="ALICE")
        )


def test_sm2_draws_every_nonce_from_secrets(monkeypatch):
    """SM2 signing takes k from secrets.randbelow and never from gmssl's random."""
    drawn: list[int] = []

    def recording_randbelow(upper: int) -> int:
        drawn.append(upper)
        return 0x1234567 % upper

    def forbidden_random_hex(length: int) -> str:
        raise AssertionError("gmssl's random-module nonce must never be used")

    monkeypatch.setattr(secrets, "randbelow", recording_randbelow)
    monkeypatch.setattr("gmssl.func.random_hex", forbidden_random_hex)

    signature = SM2_KEY.sign(PLAINTEXT)

    assert drawn == [SM2_P256.n - 1]
    SM2_KEY.public.verify(PLAINTEXT, signature)


def test_sm2_signatures_of_one_message_differ():
    """Two signatures of one message differ: k is fresh each time."""
    first, second = SM2_KEY.sign(PLAINTEXT), SM2_KEY.sign(PLAINTEXT)

    assert first != second


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (b"", "expected tag"),
        (sm2.encode_signature(1, 2) + b"\x00", "trailing bytes"),
        (bytes.fromhex("3007020101020201"), "runs past the end"),
        (bytes.fromhex("30080203000001020102"), "not minimally encoded"),
        (bytes.fromhex("3006020181020102"), "empty or negative"),
    ],
)
def test_sm2_refuses_signatures_that_are_not_strict_der(signature, reason):
    """Trailing bytes, non-minimal or negative integers are not SM2 signatures."""
    with pytest.raises(SignatureInvalid, match=reason):
        SM2_KEY.public.verify(PLAINTEXT, signature)


@pytest.mark.parametrize(
    ("r", "s"), [(0, 1), (1, 0), (SM2_P256.n, 1), (1, SM2_P256.n), (1, SM2_P256.n - 1)]
)
def test_sm2_refuses_out_of_range_signature_values(r, s):
    """r and s outside [1, n - 1], or r + s = n, never verify."""
    with pytest.raises(SignatureInvalid):
        SM2_KEY.public.verify(PLAINTEXT, sm2.encode_signature(r, s))


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_pem_keys_round_trip_and_are_recognised_by_algorithm(name):
    """Private and public PEM load back to the same key, suite told by the PEM."""
    key = get_suite(name).generate_signing_key()

    private = load_signing_key(key.private_pem())
    public = load_verifying_key(key.public_key().public_pem())

    assert private.public_key() == key.public_key() == public
    assert (private.suite, public.suite) == (name, name)


def test_keys_of_other_curves_and_algorithms_are_refused():
    """A P-256 key is not taken for an SM2 key."""
    other = ec.generate_private_key(ec.SECP256R1())
    public_pem = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    with pytest.raises(KeyInvalid, match="is not SM2"):
        load_verifying_key(public_pem)
    with pytest.raises(KeyInvalid, match="is not SM2"):
        load_signing_key(private_pem)


def test_a_point_off_the_curve_is_not_an_sm2_key():
    """Public keys are checked against the curve equation."""
    point = SM2_KEY.public.encoded_point()
    off_curve = point[:-1] + bytes([point[-1] ^ 1])

    with pytest.raises(KeyInvalid, match="not on the curve"):
        Sm2PublicKey.from_encoded_point(off_curve)


def test_sec1_ec_private_keys_load_and_embedded_public_keys_must_match():
    """SEC 1 'EC PRIVATE KEY' with the SM2 curve loads; a wrong public key fails."""
    secret = SM2_KEY.secret.to_bytes(32, "big")

    def sec1(public_point: bytes) -> bytes:
        body = _der.encode_sequence(
            _der.encode_integer(1),
            _der.encode(_der.OCTET_STRING, secret),
            _der.encode(_der.context_tag(0), _der.encode_oid(sm2.SM2_CURVE_OID)),
            _der.encode(_der.context_tag(1), _der.encode_bit_string(public_point)),
        )
        return _der.pem_encode("EC PRIVATE KEY", body)

    loaded = load_signing_key(sec1(SM2_KEY.public.encoded_point()))
    wrong = Sm2PrivateKey.generate().public.encoded_point()

    assert loaded.public_key() == SM2_KEY.public
    with pytest.raises(KeyInvalid, match="does not match"):
        load_signing_key(sec1(wrong))


def test_secret_keys_hide_their_material_and_check_their_length():
    """repr never shows key bytes; a key of the wrong length is refused."""
    gm = get_suite("gm")
    key = gm.generate_secret_key()

    shown = repr(key)

    assert key.material.hex() not in shown
    assert str(SM2_KEY.secret) not in repr(SM2_KEY)
    with pytest.raises(KeyInvalid, match="expected 16 bytes, got 32"):
        gm.secret_key(bytes(32))


def test_unknown_suites_are_refused():
    """Only gm and intl exist."""
    with pytest.raises(EnvelopeInvalid, match="'rsa' is unknown"):
        get_suite("rsa")


@settings(max_examples=8, deadline=None)
@given(message=st.binary(max_size=2048), identity=st.binary(min_size=1, max_size=64))
def test_sm2_verifies_what_it_signs_for_any_message_and_id(message, identity):
    """Sign-then-verify holds for arbitrary messages and signer IDs."""
    signature = SM2_KEY.sign(message, distinguishing_id=identity)

    SM2_KEY.public.verify(message, signature, distinguishing_id=identity)


@given(r=st.integers(min_value=1, max_value=SM2_P256.n - 1), s=st.integers(1, 2**256))
def test_der_signature_encoding_round_trips(r, s):
    """Every (r, s) encodes to DER and decodes back unchanged."""
    assert sm2.decode_signature(sm2.encode_signature(r, s)) == (r, s)


@given(plaintext=st.binary(max_size=4096), associated=st.binary(max_size=256))
def test_both_ciphers_round_trip_any_plaintext(plaintext, associated):
    """Encrypt-then-decrypt is the identity for any bytes and associated data."""
    for name in SUITE_NAMES:
        suite = get_suite(name)
        key = suite.secret_key(bytes(range(suite.secret_key_size)))

        envelope = suite.encrypt(key, plaintext, associated_data=associated)

        assert suite.decrypt(key, envelope, associated_data=associated) == plaintext
