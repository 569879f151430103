"""Duplicate detection (撞单): company-name keys, matching keys and the API's 409s.

The Hypothesis strategies build company names from a *core* (the business
name proper) drawn from characters that occur in no region, legal form,
branch word or marker, so that every decoration the tests add is one the
module docstring of :mod:`waggle.crm.dedupe` promises to see through.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity, build_org
from waggle.core.db import transaction
from waggle.crm.credit_code import ALPHABET, check_character
from waggle.crm.dedupe import (
    BRANCH_WORDS,
    ENGLISH_STRIPPED_WORDS,
    LEGAL_SUFFIXES,
    REGIONS,
    duplicate_keys,
    find_account_duplicates,
    matched_on,
    normalize_company_name,
    normalize_phone,
)
from waggle.crm.models import Account
from waggle.crm.public_pool import release_account
from waggle.crm.service import create_account
from waggle.governance.models import AuditEntry

# Strategies -------------------------------------------------------------------

_CANDIDATES = (
    "星河云帆华瑞达恒通信息技术软件电子机械贸易材料生物医药能源智能网络数据光伏"
    "汽车零部件食品物流传媒教育咨询设计建筑环保化工纺织服装家居仪器装备精密半导体"
    "芯片新泰和丰盛鑫源宏博远驰腾飞龙凤金银铜铁木石水火土风雷电晨曦明月辰创联众合力维"
)
_RESERVED = {
    char
    for word in (*REGIONS, *LEGAL_SUFFIXES, *BRANCH_WORDS, "中国", "省", "市")
    for char in word
} | set("國責團廠處辦總業門區東廣蘇慶陝貴雲自治特别行政区壮回维吾尔")
HAN = "".join(sorted(set(_CANDIDATES) - _RESERVED))
LATIN = "abcdefghijklmnopqrstuvwxyz0123456789"

han_words = st.text(alphabet=HAN, min_size=2, max_size=6)
latin_words = st.text(alphabet=LATIN, min_size=2, max_size=6).filter(
    lambda word: word not in ENGLISH_STRIPPED_WORDS
)
#: A company's core name: Chinese, or Chinese with a Latin brand before or after.
cores = st.one_of(
    han_words,
    st.tuples(latin_words, han_words).map("".join),
    st.tuples(han_words, latin_words).map("".join),
)
#: Chinese legal forms and English ones (with the space English puts before them).
LEGAL_FORMS = (
    "有限公司",
    "股份有限公司",
    "有限责任公司",
    " Co., Ltd.",
    " Co.,Ltd.",
    " CO., LTD.",
    " Company Limited",
)
CHINA_MARKERS = ("(中国)", "（中国）", " (China)")
#: How people spell a region in front of a name or in brackets.
REGION_SPELLINGS: dict[str, tuple[str, ...]] = {
    "上海": ("上海", "上海市"),
    "深圳": ("深圳", "深圳市"),
    "北京": ("北京", "北京市"),
    "广西": ("广西", "广西壮族自治区"),
    "吉林": ("吉林省", "吉林市"),
}
BRANCH_PLACES = ("北京", "上海", "杭州市", "深圳", "苏州")
credit_codes = st.text(alphabet=ALPHABET, min_size=17, max_size=17).map(
    lambda body: body + check_character(body)
)
mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


def to_full_width(text: str) -> str:
    """Return ``text`` with ASCII letters, digits and brackets in full width."""
    return "".join(
        chr(ord(char) + 0xFEE0)
        if char.isascii() and (char.isalnum() or char in "()")
        else char
        for char in text
    )


@st.composite
def name_variants(draw: st.DrawFn, core: str, region: str) -> str:
    """Return a name of the company ``region`` + ``core`` as a rep might type it."""
    legal = draw(st.sampled_from(("", *LEGAL_FORMS)))
    marker = draw(st.sampled_from(("", *CHINA_MARKERS)))
    name = core + marker
    if region:
        spelling = draw(st.sampled_from(REGION_SPELLINGS.get(region, (region,))))
        name = (
            spelling + name
            if draw(st.booleans())
            else name + draw(st.sampled_from(("(", "（"))) + spelling + "）"
        )
    name += legal
    if not legal.startswith(" ") and draw(st.booleans()):
        name += draw(st.sampled_from(BRANCH_PLACES)) + draw(
            st.sampled_from(BRANCH_WORDS)
        )
    if draw(st.booleans()):
        name = to_full_width(name)
    return name.upper() if draw(st.booleans()) else name


# Name normalisation: properties -------------------------------------------------


@given(st.text(max_size=40))
def test_normalising_any_text_is_idempotent(text: str) -> None:
    """The key of a key is the key itself, for any text at all."""
    key = normalize_company_name(text)

    assert normalize_company_name(key) == key


@given(cores, st.sampled_from(("", *REGIONS)), st.data())
def test_normalising_a_variant_is_idempotent(
    core: str, region: str, data: st.DataObject
) -> None:
    """The key of a decorated company name is a fixed point of normalisation."""
    name = data.draw(name_variants(core, region))

    key = normalize_company_name(name)

    assert normalize_company_name(key) == key


@given(cores, st.sampled_from(("", *LEGAL_FORMS)), st.sampled_from(("", "(中国)")))
def test_full_width_and_case_do_not_change_the_key(
    core: str, legal: str, marker: str
) -> None:
    """Full-width letters, digits and brackets and upper case give the same key."""
    name = core + marker + legal

    keys = {
        normalize_company_name(variant)
        for variant in (
            name,
            to_full_width(name),
            name.upper(),
            to_full_width(name.upper()),
        )
    }

    assert keys == {core}


@given(cores, st.sampled_from(LEGAL_FORMS), st.sampled_from(("", *CHINA_MARKERS)))
def test_legal_forms_and_china_markers_do_not_change_the_key(
    core: str, legal: str, marker: str
) -> None:
    """有限公司, 股份有限公司, Co., Ltd. and (中国)/（中国） drop out of the key."""
    assert normalize_company_name(core + marker + legal) == core
    assert normalize_company_name(core + legal) == core
    assert normalize_company_name(core + "（中国）") == core


@given(
    cores,
    st.sampled_from(("有限公司", "股份有限公司", "有限责任公司")),
    st.sampled_from(REGIONS),
    st.sampled_from(("", "市")),
    st.sampled_from(BRANCH_WORDS),
)
def test_a_branch_shares_the_key_of_its_head_office(
    core: str, legal: str, place: str, city_mark: str, branch: str
) -> None:
    """XX科技有限公司上海分公司 has the key of XX科技有限公司 (docstring step 6)."""
    head_office = core + legal

    branch_key = normalize_company_name(head_office + place + city_mark + branch)

    assert branch_key == normalize_company_name(head_office) == core


@given(han_words, st.sampled_from(BRANCH_PLACES), st.sampled_from(BRANCH_WORDS))
def test_a_branch_without_a_legal_form_is_cut_at_its_place(
    core: str, place: str, branch: str
) -> None:
    """星河科技北京分公司 and 星河科技分公司 both read as 星河科技."""
    assert normalize_company_name(core + place + branch) == core
    assert normalize_company_name(core + branch) == core


@given(cores, st.sampled_from(tuple(REGION_SPELLINGS)), st.data())
def test_a_region_reads_the_same_in_front_or_in_brackets(
    core: str, region: str, data: st.DataObject
) -> None:
    """上海星河, 上海市星河 and 星河（上海）有限公司 share the key 上海 + core."""
    spelling = data.draw(st.sampled_from(REGION_SPELLINGS[region]))

    in_front = normalize_company_name(spelling + core + "有限公司")
    bracketed = normalize_company_name(core + "（" + spelling + "）有限公司")

    assert in_front == bracketed == region + core


@given(cores, cores)
def test_distinct_core_names_stay_distinct(first: str, second: str) -> None:
    """Two different core names never share a key."""
    keys = (normalize_company_name(first), normalize_company_name(second))

    assert (keys[0] == keys[1]) == (first == second)


@given(cores, st.sampled_from(REGIONS), st.sampled_from(REGIONS))
def test_different_regions_stay_distinct(core: str, first: str, second: str) -> None:
    """北京星河科技 and 上海星河科技 are different legal entities and keep apart."""
    keys = (
        normalize_company_name(first + core + "有限公司"),
        normalize_company_name(second + core + "有限公司"),
    )

    assert (keys[0] == keys[1]) == (first == second)


@pytest.mark.parametrize(
    ("names", "key"),
    [
        (
            [
                "上海星河机械有限公司",
                "上海星河机械股份有限公司",
                "星河机械（上海）有限公司",
                "上海市星河机械有限公司北京分公司",
            ],
            "上海星河机械",
        ),
        (["ＩＢＭ（中国）有限公司", "IBM (China) Co., Ltd.", "ibm"], "ibm"),
        (["招商银行股份有限公司上海分行", "招商银行上海浦东支行"], "招商银行"),
        (["Acme (Shanghai) Co., Ltd.", "Shanghai Acme Company Limited"], "上海acme"),
        (["华为技术有限公司", "华为 技术 有限 公司"], "华为技术"),
        (["XX科技有限公司上海分公司", "XX科技有限公司"], "xx科技"),
        (["有限公司"], "有限公司"),
        (["星河控股"], "星河控股"),
    ],
)
def test_documented_examples_share_their_key(names: list[str], key: str) -> None:
    """Every example line of the module docstring gives the key it names."""
    assert [normalize_company_name(name) for name in names] == [key] * len(names)


# Phone numbers and matching keys: properties --------------------------------


@given(mobiles)
def test_mobile_formatting_does_not_change_the_phone_key(mobile: str) -> None:
    """+86, 0086, spaces and hyphens around a mobile number are ignored."""
    spaced = f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}"
    variants = [mobile, f"+86 {spaced}", f"0086-{mobile}", spaced.replace(" ", "-")]

    assert {normalize_phone(variant) for variant in variants} == {mobile}


@pytest.mark.parametrize(
    "phone",
    [
        "021-61234567",
        "+86 21 6123 4567",
        "(021) 6123 4567 转 8001",
        "021-61234567 ext. 8001",
        "０２１－６１２３４５６７",
    ],
)
def test_landline_formats_share_one_phone_key(phone: str) -> None:
    """A Shanghai landline written five ways has one key, with its trunk 0."""
    assert normalize_phone(phone) == "02161234567"


@given(
    cores,
    cores,
    st.one_of(st.none(), credit_codes),
    st.one_of(st.none(), mobiles),
    st.sampled_from((None, "xinghe.cn", "qq.com", "yunfan.com.cn")),
)
def test_matching_is_symmetric(
    first: str,
    second: str,
    code: str | None,
    phone: str | None,
    domain: str | None,
) -> None:
    """matched_on(a, b) equals matched_on(b, a)."""
    a = duplicate_keys(name=first, credit_code=code, phone=phone)
    b = duplicate_keys(name="上海" + second, email_domain=domain, phone=phone)

    assert matched_on(a, b) == matched_on(b, a)


def test_public_mail_domains_never_match() -> None:
    """Two companies that both use qq.com addresses are not duplicates by domain."""
    first = duplicate_keys(name="星河机械", email_domain="sales@QQ.com")
    second = duplicate_keys(name="云帆科技", email_domain="qq.com")

    assert matched_on(first, second) == ()


# Duplicate detection against the database: properties ------------------------

DB_PROPERTY = settings(max_examples=25, deadline=None)


@pytest.fixture
def org(sessions: sessionmaker[Session]) -> Org:
    return build_org(sessions)


def _store(session: Session, org: Org, **values: Any) -> Account:
    """Create an account of rep_a2 inside the caller's (rolled back) transaction."""
    return create_account(
        session, org.actors["ops"], {"owner_id": org.employees["rep_a2"], **values}
    )


def test_any_variant_of_a_stored_name_is_a_duplicate(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A variant with the same region (or none) matches; another region does not."""

    @DB_PROPERTY
    @given(cores, st.sampled_from(tuple(REGION_SPELLINGS)), st.data())
    def check(core: str, region: str, data: st.DataObject) -> None:
        variant_region = data.draw(st.sampled_from((region, "", "苏州")))
        variant = data.draw(name_variants(core, variant_region))
        with sessions() as session:
            stored = _store(session, org, name=region + core + "有限公司")

            matches = find_account_duplicates(session, name=variant)
            session.rollback()

        expected = {
            region: [(stored.id, ("name",))],
            "": [(stored.id, ("name_without_region",))],
            "苏州": [],
        }[variant_region]
        assert [(m.account_id, m.matched_on) for m in matches] == expected

    check()


def test_the_same_credit_code_always_matches(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Any spelling of a stored credit code matches, whatever the names."""

    @DB_PROPERTY
    @given(han_words, han_words, credit_codes, st.data())
    def check(first: str, second: str, code: str, data: st.DataObject) -> None:
        spelled = data.draw(
            st.sampled_from(
                (code, code.lower(), f"{code[:6]} {code[6:]}", f"{code[:8]}-{code[8:]}")
            )
        )
        with sessions() as session:
            stored = _store(session, org, name="深圳" + first, credit_code=code)

            matches = find_account_duplicates(
                session, name="北京" + second, credit_code=spelled
            )
            session.rollback()

        assert [(m.account_id, m.matched_on) for m in matches] == [
            (stored.id, ("credit_code",))
        ]

    check()


def test_different_name_code_phone_and_domain_never_match(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """An account that shares no key with the stored one is not a duplicate."""

    @DB_PROPERTY
    @given(
        st.lists(cores, min_size=2, max_size=2, unique=True),
        st.lists(credit_codes, min_size=2, max_size=2, unique=True),
        st.lists(mobiles, min_size=2, max_size=2, unique=True),
        st.lists(latin_words, min_size=2, max_size=2, unique=True),
    )
    def check(
        names: list[str], codes: list[str], phones: list[str], domains: list[str]
    ) -> None:
        with sessions() as session:
            _store(
                session,
                org,
                name=names[0] + "有限公司",
                credit_code=codes[0],
                phone=phones[0],
                email_domain=domains[0] + ".cn",
            )

            matches = find_account_duplicates(
                session,
                name=names[1] + "股份有限公司",
                credit_code=codes[1],
                phone=phones[1],
                email_domain=domains[1] + ".cn",
            )
            session.rollback()

        assert matches == []

    check()


def test_merged_accounts_are_never_duplicates(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """A merged-away account drops out of duplicate checks."""
    with transaction(sessions) as session:
        account_id = add_account(session, org.actors["rep_a2"], "上海星河机械有限公司")
        survivor_id = add_account(session, org.actors["rep_a1"], "云帆科技有限公司")
        session.get_one(Account, account_id).merged_into_id = survivor_id

    with sessions() as session:
        matches = find_account_duplicates(session, name="星河机械（上海）有限公司")

    assert matches == []


# 撞单 through the API ------------------------------------------------------------

RIVAL_CODE = "91310115MA1K4ABC1" + check_character("91310115MA1K4ABC1")


@pytest.fixture
def rival(sessions: sessionmaker[Session], org: Org) -> int:
    """rep_a2's account 上海星河机械有限公司 with a credit code, phone and domain."""
    with transaction(sessions) as session:
        return add_account(
            session,
            org.actors["rep_a2"],
            "上海星河机械有限公司",
            credit_code=RIVAL_CODE,
            phone="021-61234567",
            email_domain="xinghe.cn",
        )


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({"name": "星河机械（上海）股份有限公司"}, "name"),
        ({"name": "星河机械"}, "name_without_region"),
        ({"name": "杭州云帆科技有限公司", "credit_code": RIVAL_CODE}, "credit_code"),
        ({"name": "杭州云帆科技有限公司", "phone": "+86 21 6123 4567"}, "phone"),
        (
            {"name": "杭州云帆科技有限公司", "email_domain": "WWW.XingHe.CN"},
            "email_domain",
        ),
    ],
)
def test_a_duplicate_account_is_refused_naming_the_rival(
    client: TestClient, org: Org, rival: int, payload: dict[str, str], key: str
) -> None:
    """Each key that matches another rep's account gives 409 duplicate_account."""
    response = client.post(
        "/api/v1/accounts", json=payload, headers=org.headers("rep_a1")
    )

    error = response.json()["error"]
    assert response.status_code == 409
    assert error["code"] == "duplicate_account"
    assert error["details"] == {
        "matches": [
            {
                "account_id": rival,
                "name": "上海星河机械有限公司",
                "owner_id": org.employees["rep_a2"],
                "owner_name": "rep_a2",
                "is_in_public_pool": False,
                "matched_on": [key],
            }
        ]
    }
    assert error["message"] == (
        f"account {payload['name']!r} duplicates account {rival} "
        f"(上海星河机械有限公司, owner: rep_a2) on {key}; "
        "talk to the owner, or claim it if it is in the public pool"
    )


def test_a_duplicate_of_a_pool_account_says_to_claim_it(
    client: TestClient, sessions: sessionmaker[Session], org: Org, rival: int
) -> None:
    """A match held in the public pool is named with owner "public pool"."""
    with transaction(sessions) as session:
        release_account(session, org.actors["rep_a2"], rival, reason="客户预算冻结")

    response = client.post(
        "/api/v1/accounts",
        json={"name": "上海星河机械股份有限公司"},
        headers=org.headers("rep_a1"),
    )

    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (409, "duplicate_account")
    assert error["details"]["matches"][0]["owner_id"] is None
    assert error["details"]["matches"][0]["is_in_public_pool"] is True
    assert error["message"] == (
        f"account '上海星河机械股份有限公司' duplicates account {rival} "
        "(上海星河机械有限公司, owner: public pool) on name; "
        "talk to the owner, or claim it if it is in the public pool"
    )


def test_a_refused_duplicate_creates_nothing(
    client: TestClient, sessions: sessionmaker[Session], org: Org, rival: int
) -> None:
    """After a 409 only the rival account exists."""
    client.post(
        "/api/v1/accounts",
        json={"name": "上海星河机械股份有限公司"},
        headers=org.headers("rep_a1"),
    )

    with sessions() as session:
        names = session.scalars(select(Account.name)).all()

    assert names == ["上海星河机械有限公司"]


def test_a_different_region_is_not_a_duplicate(
    client: TestClient, org: Org, rival: int
) -> None:
    """北京星河机械 is another legal entity than 上海星河机械 and is created."""
    response = client.post(
        "/api/v1/accounts",
        json={"name": "北京星河机械有限公司"},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 201
    assert response.json()["normalized_name"] == "北京星河机械"


def test_only_sales_ops_may_force_a_duplicate(
    client: TestClient, sessions: sessionmaker[Session], org: Org, rival: int
) -> None:
    """A rep forcing a duplicate gets 403; sales_ops gets 201 and an audit row."""
    payload = {"name": "星河机械(上海)有限公司", "allow_duplicate": True}

    by_rep = client.post(
        "/api/v1/accounts", json=payload, headers=org.headers("rep_a1")
    )
    by_ops = client.post("/api/v1/accounts", json=payload, headers=org.headers("ops"))

    with sessions() as session:
        forced = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "create_duplicate")
        ).all()
    assert (by_rep.status_code, by_rep.json()["error"]["code"]) == (
        403,
        "policy_denied",
    )
    assert by_ops.status_code == 201
    assert [(row.username, row.record_ids, row.detail) for row in forced] == [
        ("ops", [str(rival)], "forced '星河机械(上海)有限公司' past 1 match(es)")
    ]


def test_an_opportunity_on_a_pool_account_is_refused(
    client: TestClient, sessions: sessionmaker[Session], org: Org, rival: int
) -> None:
    """An account in the public pool takes no opportunity until it is claimed."""
    with transaction(sessions) as session:
        release_account(session, org.actors["rep_a2"], rival, reason="客户预算冻结")

    response = client.post(
        "/api/v1/opportunities",
        json={"account_id": rival, "name": "二期产线改造"},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "account_in_public_pool"
    assert response.json()["error"]["message"] == (
        f"opportunities.account_id: account {rival} (上海星河机械有限公司) is in "
        "the public pool; claim it before adding opportunities"
    )


def test_the_same_owner_may_run_two_differently_named_deals(
    client: TestClient, org: Org, rival: int
) -> None:
    """rep_a2 adds a second deal with another name; the same name again is 409."""
    headers = org.headers("rep_a2")

    first = client.post(
        "/api/v1/opportunities",
        json={"account_id": rival, "name": "一期产线改造"},
        headers=headers,
    )
    second = client.post(
        "/api/v1/opportunities",
        json={"account_id": rival, "name": "二期产线改造"},
        headers=headers,
    )
    again = client.post(
        "/api/v1/opportunities",
        json={"account_id": rival, "name": "一期 产线改造"},
        headers=headers,
    )

    assert (first.status_code, second.status_code) == (201, 201)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate_opportunity"
    assert again.json()["error"]["details"]["matches"] == [
        {
            "opportunity_id": first.json()["id"],
            "name": "一期产线改造",
            "account_id": rival,
            "owner_id": org.employees["rep_a2"],
            "owner_name": "rep_a2",
        }
    ]


def test_a_deal_on_a_forced_duplicate_clashes_with_the_rivals_deal(
    client: TestClient, sessions: sessionmaker[Session], org: Org, rival: int
) -> None:
    """A deal on an account that duplicates another rep's account is 409."""
    with transaction(sessions) as session:
        rival_deal = add_opportunity(session, org.actors["rep_a2"], rival, "一期")
        twin = create_account(
            session,
            org.actors["ops"],
            {"name": "星河机械（上海）有限公司", "owner_id": org.employees["rep_a1"]},
            allow_duplicate=True,
        ).id

    response = client.post(
        "/api/v1/opportunities",
        json={"account_id": twin, "name": "智能仓储项目"},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 409
    assert response.json()["error"]["details"]["matches"] == [
        {
            "opportunity_id": rival_deal,
            "name": "一期",
            "account_id": rival,
            "owner_id": org.employees["rep_a2"],
            "owner_name": "rep_a2",
        }
    ]


def test_duplicate_check_endpoint_lists_matches_strongest_first(
    client: TestClient, sessions: sessionmaker[Session], org: Org, rival: int
) -> None:
    """POST /duplicates/accounts ranks a credit-code match above a name match."""
    with transaction(sessions) as session:
        by_name = create_account(
            session,
            org.actors["ops"],
            {"name": "云帆科技有限公司", "owner_id": org.employees["rep_b1"]},
        ).id

    response = client.post(
        "/api/v1/duplicates/accounts",
        json={"name": "云帆科技股份有限公司", "credit_code": RIVAL_CODE},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 200
    assert [(m["account_id"], m["matched_on"]) for m in response.json()] == [
        (rival, ["credit_code"]),
        (by_name, ["name"]),
    ]
