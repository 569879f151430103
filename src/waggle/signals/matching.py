"""Matching: who an event involves, and which account and opportunity it is about.

The matcher resolves a draft's references against a :class:`Directory`, a
snapshot of the people and records that references can name (employees,
contacts, accounts, open opportunities and identity links), loaded once per
batch so that a million events cost a million dictionary look-ups, not a
million queries.

The rules, in order:

1. The actor is the sender when the sender is an employee, else the first
   recipient who is. The counterpart is the sender when the sender is a
   contact, else the first recipient who is. The speaker follows the sender.
2. The account is the one named explicitly, else the counterpart's, else the
   one a group chat is linked to, else the one whose e-mail domain an outside
   address carries.
3. The opportunity is the one named explicitly or linked to the group chat;
   else, among the account's opportunities that were open when the event
   happened, the only one, or the only one the actor owns. Anything else is
   left unset with a note saying why.

An event without an employee is ``unmatched``; one with an employee but no
account is ``partial``. Both are kept with their note and matched again when
the directory changes (:func:`waggle.signals.service.rematch_events`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from waggle.crm.models import Account, Contact, Opportunity
from waggle.identity.models import Employee
from waggle.signals.models import IdentityLink, MatchStatus

PLATFORM_KINDS = frozenset({"wecom", "dingtalk", "feishu", "wechat"})
ROOM_KINDS = frozenset({"wecom_room", "dingtalk_room", "feishu_room"})
# An event up to this long after an opportunity closed still belongs to it
# (the thank-you call, the signed contract mailed the next day).
CLOSE_GRACE = dt.timedelta(days=7)

_NON_DIGITS = re.compile(r"\D+")


@dataclass(frozen=True, slots=True)
class Party:
    """A resolved person: an employee, or a contact with the account it belongs to."""

    kind: str  # "employee" or "contact"
    id: int
    account_id: int | None = None


@dataclass(frozen=True, slots=True)
class Room:
    """A group chat tied to an account or an opportunity by an identity link."""

    account_id: int | None
    opportunity_id: int | None


@dataclass(frozen=True, slots=True)
class OpenSpan:
    """When an opportunity was open, and who owned it."""

    opportunity_id: int
    owner_id: int | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None

    def covers(self, instant: dt.datetime) -> bool:
        if instant < self.opened_at - CLOSE_GRACE:
            return False
        return self.closed_at is None or instant <= self.closed_at + CLOSE_GRACE


@dataclass(frozen=True, slots=True)
class Match:
    """What the matcher found for one draft."""

    actor_id: int | None
    contact_id: int | None
    account_id: int | None
    opportunity_id: int | None
    speaker: str | None
    status: MatchStatus
    note: str | None


@dataclass
class Directory:
    """Everything references can resolve to, as plain dictionaries."""

    people: dict[str, Party] = field(default_factory=dict)
    accounts: dict[str, int] = field(default_factory=dict)
    account_domains: dict[str, int] = field(default_factory=dict)
    opportunities: dict[str, int] = field(default_factory=dict)
    opportunity_accounts: dict[int, int] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    contact_accounts: dict[int, int] = field(default_factory=dict)
    spans: dict[int, list[OpenSpan]] = field(default_factory=dict)
    version: tuple[object, ...] = ()

    def resolve_person(self, reference: str | None) -> Party | None:
        if reference is None:
            return None
        return self.people.get(normalise_reference(reference))


def normalise_reference(reference: str) -> str:
    """Return the canonical form of a reference: lower-case e-mail, bare digits."""
    kind, _, value = reference.partition(":")
    if kind == "email":
        return f"email:{value.strip().lower()}"
    if kind == "phone":
        return f"phone:{phone_digits(value)}"
    return f"{kind}:{value.strip()}"


def phone_digits(value: str) -> str:
    """Return a phone number as digits without the Chinese country prefix."""
    digits = _NON_DIGITS.sub("", value)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            return digits[len(prefix) :]
    return digits


def directory_version(session: Session) -> tuple[object, ...]:
    """Return a cheap fingerprint that changes when the directory would."""
    return (
        session.scalar(select(func.count(), func.max(Employee.id))),
        session.execute(select(func.count(), func.max(Contact.updated_at))).one(),
        session.execute(select(func.count(), func.max(Account.updated_at))).one(),
        session.execute(select(func.count(), func.max(Opportunity.updated_at))).one(),
        session.execute(select(func.count(), func.max(IdentityLink.id))).one(),
    )


def load_directory(session: Session) -> Directory:
    """Read the current directory from the database."""
    directory = Directory(version=directory_version(session))
    _load_employees(session, directory)
    _load_contacts(session, directory)
    _load_accounts(session, directory)
    _load_opportunities(session, directory)
    _load_links(session, directory)
    return directory


def _load_employees(session: Session, directory: Directory) -> None:
    rows = session.execute(
        select(Employee.id, Employee.external_id, Employee.email, Employee.phone)
    )
    for employee_id, external_id, email, phone in rows:
        party = Party("employee", employee_id)
        directory.people[f"employee:{external_id}"] = party
        _add_contact_points(directory, party, email=email, phone=phone)


def _load_contacts(session: Session, directory: Directory) -> None:
    rows = session.execute(
        select(
            Contact.id,
            Contact.external_id,
            Contact.account_id,
            Contact.email,
            Contact.phone,
            Contact.wechat_id,
        )
    )
    for contact_id, external_id, account_id, email, phone, wechat_id in rows:
        party = Party("contact", contact_id, account_id)
        directory.contact_accounts[contact_id] = account_id
        directory.people[f"contact:{external_id}"] = party
        # An employee's own address or number wins over a contact's copy of it.
        _add_contact_points(directory, party, email=email, phone=phone)
        if wechat_id:
            directory.people.setdefault(f"wechat:{wechat_id.strip()}", party)


def _add_contact_points(
    directory: Directory, party: Party, *, email: str | None, phone: str | None
) -> None:
    if email:
        directory.people.setdefault(normalise_reference(f"email:{email}"), party)
    if phone and phone_digits(phone):
        directory.people.setdefault(normalise_reference(f"phone:{phone}"), party)


def _load_accounts(session: Session, directory: Directory) -> None:
    rows = session.execute(
        select(Account.id, Account.external_id, Account.email_domain).where(
            Account.merged_into_id.is_(None)
        )
    )
    for account_id, external_id, domain in rows:
        directory.accounts[external_id] = account_id
        if domain:
            directory.account_domains.setdefault(domain.strip().lower(), account_id)


def _load_opportunities(session: Session, directory: Directory) -> None:
    rows = session.execute(
        select(
            Opportunity.id,
            Opportunity.external_id,
            Opportunity.account_id,
            Opportunity.owner_id,
            Opportunity.created_at,
            Opportunity.closed_at,
        )
    )
    spans: dict[int, list[OpenSpan]] = defaultdict(list)
    for opportunity_id, external_id, account_id, owner_id, opened, closed in rows:
        directory.opportunities[external_id] = opportunity_id
        directory.opportunity_accounts[opportunity_id] = account_id
        spans[account_id].append(OpenSpan(opportunity_id, owner_id, opened, closed))
    directory.spans = dict(spans)


def _load_links(session: Session, directory: Directory) -> None:
    for link in session.scalars(select(IdentityLink)):
        key = f"{link.platform}:{link.external_id}"
        if link.platform in ROOM_KINDS:
            directory.rooms[key] = Room(link.account_id, link.opportunity_id)
        elif link.employee_id is not None:
            directory.people[key] = Party("employee", link.employee_id)
        elif link.contact_id is not None:
            account_id = directory.contact_accounts.get(link.contact_id)
            directory.people[key] = Party("contact", link.contact_id, account_id)


class Matcher:
    """Applies the matching rules of this module to drafts' references."""

    def __init__(self, directory: Directory):
        self.directory = directory

    def match(
        self,
        *,
        sender: str | None,
        recipients: tuple[str, ...] | list[str],
        account_ref: str | None,
        opportunity_ref: str | None,
        thread_ref: str | None,
        occurred_at: dt.datetime,
    ) -> Match:
        """Resolve one event's references (see the module docstring for the rules)."""
        sender_party = self.directory.resolve_person(sender)
        others = [self.directory.resolve_person(ref) for ref in recipients]
        parties = [sender_party, *others]
        actor = _first(parties, "employee")
        counterpart = _first(parties, "contact")
        room = self.directory.rooms.get(thread_ref or "")

        account_id = self._account(account_ref, counterpart, room, sender, recipients)
        opportunity_id, opportunity_note = self._opportunity(
            opportunity_ref, room, account_id, actor, occurred_at
        )
        if account_id is None and opportunity_id is not None:
            account_id = self.directory.opportunity_accounts.get(opportunity_id)
        status, note = _status(actor, account_id, sender, recipients)
        return Match(
            actor_id=actor.id if actor else None,
            contact_id=counterpart.id if counterpart else None,
            account_id=account_id,
            opportunity_id=opportunity_id,
            speaker=_speaker(sender_party),
            status=status,
            note=note or opportunity_note,
        )

    def _account(
        self,
        account_ref: str | None,
        counterpart: Party | None,
        room: Room | None,
        sender: str | None,
        recipients: tuple[str, ...] | list[str],
    ) -> int | None:
        if account_ref is not None:
            kind, _, value = account_ref.partition(":")
            if kind == "account":
                return self.directory.accounts.get(value.strip())
        if counterpart is not None and counterpart.account_id is not None:
            return counterpart.account_id
        if room is not None and room.account_id is not None:
            return room.account_id
        for reference in (sender, *recipients):
            if reference and reference.startswith("email:") and "@" in reference:
                domain = reference.rsplit("@", 1)[1].strip().lower()
                if domain in self.directory.account_domains:
                    return self.directory.account_domains[domain]
        return None

    def _opportunity(
        self,
        opportunity_ref: str | None,
        room: Room | None,
        account_id: int | None,
        actor: Party | None,
        occurred_at: dt.datetime,
    ) -> tuple[int | None, str | None]:
        if opportunity_ref is not None:
            _, _, value = opportunity_ref.partition(":")
            found = self.directory.opportunities.get(value.strip())
            if found is None:
                return None, f"opportunity {opportunity_ref} is not known"
            return found, None
        if room is not None and room.opportunity_id is not None:
            return room.opportunity_id, None
        if account_id is None:
            return None, None
        return self._open_opportunity(account_id, actor, occurred_at)

    def _open_opportunity(
        self, account_id: int, actor: Party | None, occurred_at: dt.datetime
    ) -> tuple[int | None, str | None]:
        spans = [
            span
            for span in self.directory.spans.get(account_id, ())
            if span.covers(occurred_at)
        ]
        if len(spans) == 1:
            return spans[0].opportunity_id, None
        if actor is not None:
            owned = [span for span in spans if span.owner_id == actor.id]
            if len(owned) == 1:
                return owned[0].opportunity_id, None
        if not spans:
            return None, "the account had no open opportunity at the time"
        return None, f"the account had {len(spans)} open opportunities at the time"


def _first(parties: list[Party | None], kind: str) -> Party | None:
    return next((party for party in parties if party and party.kind == kind), None)


def _speaker(sender: Party | None) -> str | None:
    if sender is None:
        return None
    return "rep" if sender.kind == "employee" else "customer"


def _status(
    actor: Party | None,
    account_id: int | None,
    sender: str | None,
    recipients: tuple[str, ...] | list[str],
) -> tuple[MatchStatus, str | None]:
    if actor is None:
        named = ", ".join(ref for ref in (sender, *recipients) if ref) or "nobody"
        return MatchStatus.UNMATCHED, f"no employee among {named[:240]}"
    if account_id is None:
        return MatchStatus.PARTIAL, "no contact or account could be found"
    return MatchStatus.MATCHED, None


__all__ = [
    "Directory",
    "Match",
    "Matcher",
    "directory_version",
    "load_directory",
    "normalise_reference",
    "phone_digits",
]
