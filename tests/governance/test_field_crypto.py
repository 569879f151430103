"""Field encryption at rest: round trips, rotation and crypto-shredding."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account
from waggle.core.db import transaction
from waggle.core.errors import PolicyDenied
from waggle.core.settings import Settings
from waggle.governance.crypto import DecryptionFailed
from waggle.governance.field_crypto import (
    FieldKeyShredded,
    ShreddedValue,
    get_sealed_value,
    put_sealed_value,
    rotate_field_keys,
    shred_key,
    uninstall_field_cipher,
    use_field_cipher,
)
from waggle.governance.models import AuditEntry, FieldDataKey

SECRET = "开户行：招商银行 6225 8801 2345 6789"
CIPHERS = {"gm": "SM4-GCM", "intl": "AES-256-GCM"}


@pytest.fixture(autouse=True)
def _no_cipher_left_behind() -> Iterator[None]:
    yield
    uninstall_field_cipher()


@pytest.fixture(params=["gm", "intl"])
def suite_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return dataclasses.replace(settings, crypto_suite=request.param)


def _seal(
    sessions: sessionmaker[Session],
    org: Org,
    settings: Settings,
    *,
    value: str = SECRET,
    account: str = "深圳星河科技有限公司",
) -> int:
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(session, rep, account)
        put_sealed_value(
            session,
            rep,
            settings=settings,
            resource="accounts",
            record_id=account_id,
            field_name="bank_account",
            value=value,
            owner_id=rep.employee_id,
        )
    return account_id


def _read(
    sessions: sessionmaker[Session], org: Org, settings: Settings, account_id: int
) -> str:
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        return get_sealed_value(
            session,
            rep,
            settings=settings,
            resource="accounts",
            record_id=account_id,
            field_name="bank_account",
            owner_id=rep.employee_id,
        )


def _stored(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        raw = session.execute(text("SELECT value FROM sealed_values")).scalar_one()
    assert isinstance(raw, str)
    return raw


def test_a_sealed_value_round_trips_under_the_instance_suite(
    sessions: sessionmaker[Session], org: Org, suite_settings: Settings
) -> None:
    """A value written through the service reads back exactly, Chinese intact."""
    account_id = _seal(sessions, org, suite_settings)

    value = _read(sessions, org, suite_settings, account_id)

    assert value == SECRET


def test_the_column_at_rest_holds_an_envelope_and_no_plaintext(
    sessions: sessionmaker[Session], org: Org, suite_settings: Settings
) -> None:
    """The raw column is an envelope naming suite, cipher and key; no plaintext."""
    _seal(sessions, org, suite_settings)

    stored = _stored(sessions)

    envelope = json.loads(stored)
    with sessions() as session:
        key_id = session.scalars(select(FieldDataKey.key_id)).one()
    assert (envelope["suite"], envelope["alg"], envelope["kid"]) == (
        suite_settings.crypto_suite,
        CIPHERS[suite_settings.crypto_suite],
        key_id,
    )
    assert "招商银行" not in stored
    assert "6789" not in stored


def test_an_envelope_moved_to_another_column_does_not_decrypt(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """The column name is bound into the envelope as associated data."""
    _seal(sessions, org, settings)
    stored = _stored(sessions)

    with sessions() as session:
        cipher = use_field_cipher(session, settings)

    with pytest.raises(DecryptionFailed):
        cipher.decrypt(stored, context="accounts.phone")


def test_rotation_re_encrypts_and_the_old_key_decrypts_until_shredded(
    sessions: sessionmaker[Session], org: Org, suite_settings: Settings
) -> None:
    """Values move to the new key; the retired key opens old copies until shredded."""
    account_id = _seal(sessions, org, suite_settings)
    old_copy = _stored(sessions)
    old_key = json.loads(old_copy)["kid"]

    with transaction(sessions) as session:
        report = rotate_field_keys(
            session, org.actors["admin"], settings=suite_settings
        )

    assert (report.re_encrypted, report.unreadable) == (1, 0)
    assert report.retired_key_ids == (old_key,)
    assert json.loads(_stored(sessions))["kid"] == report.new_key_id
    assert _read(sessions, org, suite_settings, account_id) == SECRET
    with sessions() as session:
        cipher = use_field_cipher(session, suite_settings)
        assert cipher.decrypt(old_copy, context="sealed_values.value") == SECRET
    with transaction(sessions) as session:
        shred_key(session, org.actors["admin"], old_key, settings=suite_settings)
    with sessions() as session:
        cipher = use_field_cipher(session, suite_settings)
        gone = cipher.decrypt(old_copy, context="sealed_values.value")
    assert isinstance(gone, ShreddedValue)
    assert gone.key_id == old_key
    assert _read(sessions, org, suite_settings, account_id) == SECRET


def test_after_shredding_values_are_unreadable_and_the_audit_row_names_the_key(
    sessions: sessionmaker[Session], org: Org, suite_settings: Settings
) -> None:
    """Shredding the current key loses its values for good; new writes still work."""
    account_id = _seal(sessions, org, suite_settings)
    key_id = json.loads(_stored(sessions))["kid"]

    with transaction(sessions) as session:
        report = shred_key(
            session, org.actors["admin"], key_id, settings=suite_settings
        )

    with pytest.raises(FieldKeyShredded) as gone:
        _read(sessions, org, suite_settings, account_id)
    assert gone.value.message == (
        f"accounts {account_id} field 'bank_account': its data key {key_id}"
        " was shredded; the value cannot be recovered"
    )
    assert report.unreadable == 1
    assert report.new_key_id is not None
    with sessions() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "shred")
        ).one()
        row = session.scalars(
            select(FieldDataKey).where(FieldDataKey.key_id == key_id)
        ).one()
    assert (entry.resource, entry.record_ids, entry.username) == (
        "field_keys",
        [key_id],
        "admin",
    )
    assert entry.detail == (
        f"data key {key_id} ({suite_settings.crypto_suite}) destroyed;"
        " 1 sealed values are now unreadable"
    )
    assert (row.status, row.wrapped) == ("shredded", None)
    new_account = _seal(
        sessions, org, suite_settings, value="新的账号", account="成都蓝海物流有限公司"
    )
    assert _read(sessions, org, suite_settings, new_account) == "新的账号"


def test_only_it_admin_may_rotate_or_shred(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """Sales ops may not rotate field keys."""
    with transaction(sessions) as session, pytest.raises(PolicyDenied) as refused:
        rotate_field_keys(session, org.actors["ops"], settings=settings)

    assert refused.value.message == "ops may not update field_keys"


def test_a_rep_cannot_read_a_sealed_field_of_another_reps_account(
    sessions: sessionmaker[Session], org: Org, settings: Settings
) -> None:
    """Sealed fields follow the record's row scope."""
    account_id = _seal(sessions, org, settings)

    with transaction(sessions) as session, pytest.raises(PolicyDenied):
        get_sealed_value(
            session,
            org.actors["rep_a2"],
            settings=settings,
            resource="accounts",
            record_id=account_id,
            field_name="bank_account",
            owner_id=org.employees["rep_a1"],
        )
