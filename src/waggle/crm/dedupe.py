"""Duplicate detection (撞单检查) for accounts: company-name normalisation and matching.

Two account records describe the same company when any of these keys agree:

``name``
    Their normalised names are equal (:func:`normalize_company_name`).
``name_without_region``
    One name carries a region (上海, 深圳市, ...) and the other none, and the
    rest is equal: ``星河科技`` may be ``上海星河科技``. Two *different*
    regions never match: ``北京星河科技`` and ``上海星河科技`` are separate
    legal entities.
``credit_code``
    The unified social credit code (统一社会信用代码), ignoring case, spaces
    and hyphens.
``phone``
    The phone number, ignoring formatting, ``+86``/``0086`` and extensions.
``email_domain``
    The email domain, unless it is a public mailbox provider (qq.com, 163.com,
    gmail.com, ...) that thousands of unrelated companies share.

Company-name normalisation, step by step:

1. Unicode NFKC (full-width ``ＡＢＣ（中国）`` becomes ``ABC(中国)``), case folding,
   a few traditional characters of legal forms mapped to simplified ones
   (``有限責任公司`` → ``有限责任公司``, ``集團`` → ``集团``).
2. Punctuation, symbols and white space are separators only; brackets of every
   kind (``()（）[]【】〔〕``) are kept until step 4.
3. The markers ``(中国)``, ``(China)``, ``(PRC)``, ``(集团)``, ``(Group)`` are dropped.
4. A region in brackets moves to the front: ``星河科技(上海)有限公司`` reads as
   ``上海星河科技有限公司``. A bracketed place right before a branch word is the
   branch's place, not the company's region, and is dropped with the branch.
5. English legal forms at the end are dropped by whole words: ``Co., Ltd.``,
   ``Company Limited``, ``Inc.``, ``Corp.``, ``LLC``, ``GmbH``, ``PLC``, ``Group``.
   English branch tails (``Beijing Branch``, ``Representative Office``) too.
   A leading or bracketed pinyin region (``Shanghai``, ``(Shenzhen)``) counts as
   that region.
6. All separators are removed; a Chinese branch tail is cut, with its place:
   ``…有限公司北京分公司`` keeps what precedes the place, ``星河科技北京朝阳分公司``
   cuts at the first known region after the start, ``星河科技分公司`` drops the
   branch word alone. Branch words: 分公司, 分厂, 分店, 分行, 支行, 办事处,
   代表处, 营业部, 分部, 分中心.
7. Chinese legal forms at the end are dropped repeatedly: 股份有限公司,
   有限责任公司, 集团有限公司, 有限公司, 集团公司, 股份公司, 总公司, 公司, 集团,
   有限合伙, 普通合伙, 合伙企业.
8. Leading regions are stripped (province then city; the most specific one is
   kept) and the key is that region followed by the rest.

The whole pipeline is repeated until the key no longer changes, so the key of a
key is itself. A step that would leave nothing keeps the text as it was
(``有限公司`` alone stays ``有限公司``). Regions are those of :data:`REGIONS`:
every province-level division and about a hundred large cities.

Examples (each line: names that share one key)::

    上海星河机械有限公司 · 上海星河机械股份有限公司 · 星河机械（上海）有限公司
        · 上海市星河机械有限公司北京分公司                          → 上海星河机械
    ＩＢＭ（中国）有限公司 · IBM (China) Co., Ltd. · ibm                → ibm
    招商银行股份有限公司上海分行 · 招商银行上海浦东支行              → 招商银行
    Acme (Shanghai) Co., Ltd. · Shanghai Acme Company Limited        → 上海acme
    华为技术有限公司 · 华为 技术 有限 公司                          → 华为技术

and names that stay apart: ``星河机械`` / ``星河科技`` (different business words),
``北京星河科技`` / ``上海星河科技`` (different regions), ``星河控股`` / ``星河``
(a holding company is not a legal form).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from waggle.crm.models import Account
from waggle.identity.models import Employee

# Province-level divisions: short name → the forms it is written in.
_PROVINCES: dict[str, tuple[str, ...]] = {
    "北京": ("北京市",),
    "天津": ("天津市",),
    "上海": ("上海市",),
    "重庆": ("重庆市",),
    "河北": ("河北省",),
    "山西": ("山西省",),
    "辽宁": ("辽宁省",),
    "吉林": ("吉林省", "吉林市"),
    "黑龙江": ("黑龙江省",),
    "江苏": ("江苏省",),
    "浙江": ("浙江省",),
    "安徽": ("安徽省",),
    "福建": ("福建省",),
    "江西": ("江西省",),
    "山东": ("山东省",),
    "河南": ("河南省",),
    "湖北": ("湖北省",),
    "湖南": ("湖南省",),
    "广东": ("广东省",),
    "海南": ("海南省",),
    "四川": ("四川省",),
    "贵州": ("贵州省",),
    "云南": ("云南省",),
    "陕西": ("陕西省",),
    "甘肃": ("甘肃省",),
    "青海": ("青海省",),
    "台湾": ("台湾省",),
    "内蒙古": ("内蒙古自治区",),
    "广西": ("广西壮族自治区", "广西自治区"),
    "西藏": ("西藏自治区",),
    "宁夏": ("宁夏回族自治区", "宁夏自治区"),
    "新疆": ("新疆维吾尔自治区", "新疆自治区"),
    "香港": ("香港特别行政区",),
    "澳门": ("澳门特别行政区",),
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Large cities that company names often start with (prefecture level).
_CITIES = _words(
    "石家庄 唐山 秦皇岛 保定 廊坊 邯郸 沧州 太原 大同 呼和浩特 包头 鄂尔多斯 "
    "沈阳 大连 鞍山 长春 哈尔滨 大庆 南京 无锡 徐州 常州 苏州 南通 连云港 淮安 "
    "盐城 扬州 镇江 泰州 宿迁 杭州 宁波 温州 嘉兴 湖州 绍兴 金华 衢州 舟山 台州 "
    "丽水 合肥 芜湖 蚌埠 福州 厦门 莆田 泉州 漳州 南昌 赣州 九江 济南 青岛 淄博 "
    "烟台 潍坊 济宁 泰安 威海 临沂 郑州 洛阳 开封 新乡 武汉 宜昌 襄阳 长沙 株洲 "
    "湘潭 岳阳 广州 深圳 珠海 汕头 佛山 江门 湛江 惠州 东莞 中山 肇庆 南宁 柳州 "
    "桂林 海口 三亚 成都 绵阳 宜宾 贵阳 遵义 昆明 拉萨 西安 宝鸡 咸阳 兰州 西宁 "
    "银川 乌鲁木齐 克拉玛依"
)
_PINYIN = {
    "北京": "beijing",
    "天津": "tianjin",
    "上海": "shanghai",
    "重庆": "chongqing",
    "江苏": "jiangsu",
    "浙江": "zhejiang",
    "广东": "guangdong",
    "山东": "shandong",
    "福建": "fujian",
    "四川": "sichuan",
    "香港": "hong kong",
    "澳门": "macau",
    "深圳": "shenzhen",
    "广州": "guangzhou",
    "杭州": "hangzhou",
    "苏州": "suzhou",
    "南京": "nanjing",
    "武汉": "wuhan",
    "成都": "chengdu",
    "西安": "xian",
    "厦门": "xiamen",
    "青岛": "qingdao",
    "大连": "dalian",
    "宁波": "ningbo",
    "无锡": "wuxi",
    "沈阳": "shenyang",
    "长沙": "changsha",
    "郑州": "zhengzhou",
    "合肥": "hefei",
    "东莞": "dongguan",
    "佛山": "foshan",
    "珠海": "zhuhai",
}

#: Canonical region names a company key may start with.
REGIONS: tuple[str, ...] = tuple(dict.fromkeys([*_PROVINCES, *_CITIES]))

_REGION_OF_FORM: dict[str, str] = {region: region for region in REGIONS}
_REGION_OF_FORM.update(
    {form: region for region, forms in _PROVINCES.items() for form in forms}
)
_REGION_OF_FORM.update({f"{city}市": city for city in _CITIES})
_REGION_FORMS = tuple(sorted(_REGION_OF_FORM, key=len, reverse=True))
_REGION_OF_PINYIN = {pinyin: region for region, pinyin in _PINYIN.items()}

#: Chinese legal forms stripped from the end, longest first.
LEGAL_SUFFIXES: tuple[str, ...] = (
    "股份有限公司",
    "有限责任公司",
    "集团有限公司",
    "个人独资企业",
    "有限公司",
    "集团公司",
    "股份公司",
    "有限合伙",
    "普通合伙",
    "合伙企业",
    "总公司",
    "公司",
    "集团",
)
#: Chinese words that end a branch's name.
BRANCH_WORDS: tuple[str, ...] = (
    "分公司",
    "分中心",
    "办事处",
    "代表处",
    "营业部",
    "分厂",
    "分店",
    "分行",
    "支行",
    "分部",
)
#: English legal forms (as word sequences) stripped from the end.
ENGLISH_LEGAL_FORMS: tuple[tuple[str, ...], ...] = (
    ("company", "limited"),
    ("co", "limited"),
    ("co", "ltd"),
    ("pte", "ltd"),
    ("pty", "ltd"),
    ("incorporated",),
    ("corporation",),
    ("company",),
    ("limited",),
    ("group",),
    ("corp",),
    ("gmbh",),
    ("ltd",),
    ("inc",),
    ("llc",),
    ("plc",),
    ("co",),
)
_LEGAL_LAST_WORDS = frozenset(form[-1] for form in ENGLISH_LEGAL_FORMS)
_ENGLISH_BRANCH_TAILS: tuple[tuple[str, ...], ...] = (
    ("representative", "office"),
    ("branch", "office"),
    ("rep", "office"),
    ("branch",),
)
#: Single words that the English steps may remove (for callers that build names).
ENGLISH_STRIPPED_WORDS = frozenset(
    word for form in (*ENGLISH_LEGAL_FORMS, *_ENGLISH_BRANCH_TAILS) for word in form
) | frozenset(word for pinyin in _PINYIN.values() for word in pinyin.split())

_TRADITIONAL = str.maketrans(
    {
        "國": "国",
        "責": "责",
        "團": "团",
        "廠": "厂",
        "處": "处",
        "辦": "办",
        "總": "总",
        "業": "业",
        "門": "门",
        "區": "区",
        "東": "东",
        "廣": "广",
        "蘇": "苏",
        "慶": "庆",
        "陝": "陕",
        "貴": "贵",
        "雲": "云",
    }
)
_OPENING = "([{【〔〖〘〚⦅"
_CLOSING = ")]}】〕〗〙〛⦆"
_MARKER_WORDS = ("中国", "china", "prc", "集团", "group")


def _spaced(word: str) -> str:
    """Return a pattern for ``word`` that tolerates white space between letters."""
    return r"\s*".join(re.escape(char) for char in word)


_MARKERS = re.compile(
    r"\(\s*(?:" + "|".join(_spaced(word) for word in _MARKER_WORDS) + r")\s*\)"
)
_BRANCH_PATTERN = "|".join(_spaced(word) for word in BRANCH_WORDS)
_BRACKET_REGION = re.compile(
    r"\(\s*(?P<region>"
    + "|".join(_spaced(form) for form in (*_REGION_FORMS, *_REGION_OF_PINYIN))
    + r")\s*\)(?P<branch>\s*(?:"
    + _BRANCH_PATTERN
    + r"))?"
)
_REGION_ANYWHERE = re.compile("|".join(re.escape(form) for form in _REGION_FORMS))
_LEADING_REGION = re.compile("(?:" + _REGION_ANYWHERE.pattern + ")")
_MIN_CORE = 2


def normalize_company_name(name: str) -> str:
    """Return the comparison key of a company name (see the module docstring).

    The key is stable: the key of a key is the key itself.
    """
    key = name
    for _ in range(len(name) + 3):
        following = _normalize_once(key)
        if following == key:
            return key
        key = following
    return key


def _normalize_once(name: str) -> str:
    text = _canonical_characters(name)
    text = _MARKERS.sub(" ", text)
    text, bracket_region = _take_bracket_region(text)
    text = re.sub(r"[()]", " ", text)
    tokens, english_region = _strip_english(_tokens(text))
    compact = "".join(tokens)
    compact = _strip_branch(compact)
    compact = _strip_legal_suffixes(compact)
    leading_region, core = _strip_leading_regions(compact)
    region = leading_region or english_region or bracket_region
    return region + core if core else compact


def _canonical_characters(name: str) -> str:
    """Fold width, case and a few traditional characters; separators to spaces."""
    text = name
    for _ in range(3):
        folded = unicodedata.normalize("NFKC", text).casefold()
        if folded == text:
            break
        text = folded
    text = text.translate(_TRADITIONAL)
    characters = []
    for char in text:
        if char in _OPENING:
            characters.append("(")
        elif char in _CLOSING:
            characters.append(")")
        elif unicodedata.category(char)[0] in "PZSC":
            characters.append(" ")
        else:
            characters.append(char)
    return " ".join("".join(characters).split())


def _take_bracket_region(text: str) -> tuple[str, str]:
    """Remove bracketed regions; return the text and the first one that names one.

    A bracketed place followed by a branch word is the branch's place: it is
    removed but names no region.
    """
    region = ""
    for match in _BRACKET_REGION.finditer(text):
        if match.group("branch") is None and not region:
            form = re.sub(r"\s", "", match.group("region"))
            region = _REGION_OF_FORM.get(form) or _REGION_OF_PINYIN.get(
                " ".join(match.group("region").split()), ""
            )
    stripped = _BRACKET_REGION.sub(
        lambda match: " " + (match.group("branch") or "") + " ", text
    )
    return stripped, region


def _tokens(text: str) -> list[str]:
    """Split on spaces and between Latin letters or digits and other scripts."""
    tokens: list[str] = []
    for word in text.split():
        tokens += [part for part in re.split(r"([0-9a-z]+)", word) if part]
    return tokens


def _strip_english(tokens: list[str]) -> tuple[list[str], str]:
    """Drop English legal forms and branch tails at the end, and a leading region."""
    changed = True
    while changed:
        changed = False
        for tail in _ENGLISH_BRANCH_TAILS:
            if _ends_with(tokens, tail, keep=1):
                tokens = _without_branch_place(tokens[: -len(tail)])
                changed = True
                break
        for form in ENGLISH_LEGAL_FORMS:
            if tuple(tokens) == form:
                return _strip_leading_pinyin(tokens)
            if _ends_with(tokens, form, keep=1):
                tokens = tokens[: -len(form)]
                changed = True
                break
    return _strip_leading_pinyin(tokens)


def _ends_with(tokens: list[str], tail: tuple[str, ...], *, keep: int) -> bool:
    return len(tokens) >= len(tail) + keep and tuple(tokens[-len(tail) :]) == tail


def _without_branch_place(tokens: list[str]) -> list[str]:
    """Cut an English branch's place: after the last legal form, else one word."""
    for index in range(len(tokens) - 1, 0, -1):
        if tokens[index] in _LEGAL_LAST_WORDS:
            return tokens[: index + 1]
    return tokens[:-1] if len(tokens) >= 2 else tokens


def _strip_leading_pinyin(tokens: list[str]) -> tuple[list[str], str]:
    for size in (2, 1):
        head = " ".join(tokens[:size])
        if len(tokens) > size and head in _REGION_OF_PINYIN:
            return tokens[size:], _REGION_OF_PINYIN[head]
    return tokens, ""


def _strip_branch(compact: str) -> str:
    """Cut a Chinese branch tail (分公司, 办事处, ...) together with its place."""
    for word in BRANCH_WORDS:
        if compact.endswith(word) and len(compact) > len(word):
            head = compact[: -len(word)]
            legal_end = max(head.rfind("公司") + 2, head.rfind("集团") + 2)
            if legal_end >= 2 + _MIN_CORE:
                return head[:legal_end]
            place = _REGION_ANYWHERE.search(head, _MIN_CORE)
            return head[: place.start()] if place else head
    return compact


def _strip_legal_suffixes(compact: str) -> str:
    """Drop legal forms from the end; a name that is only a legal form stays."""
    stripped = True
    while stripped:
        stripped = False
        for suffix in LEGAL_SUFFIXES:
            if compact == suffix:
                return compact
            if compact.endswith(suffix):
                compact = compact[: -len(suffix)]
                stripped = True
                break
    return compact


def _strip_leading_regions(compact: str) -> tuple[str, str]:
    """Return the most specific leading region and the rest of the name."""
    region, rest = "", compact
    while True:
        match = _LEADING_REGION.match(rest)
        if match is None or len(rest) - match.end() < _MIN_CORE:
            return region, rest
        region, rest = _REGION_OF_FORM[match.group()], rest[match.end() :]


def split_region(key: str) -> tuple[str, str]:
    """Split a normalised key into its leading region (or ``""``) and the rest."""
    match = _LEADING_REGION.match(key)
    if match is None or len(key) - match.end() < _MIN_CORE:
        return "", key
    return _REGION_OF_FORM[match.group()], key[match.end() :]


def name_lookup_keys(key: str) -> list[str]:
    """Return the stored name keys that match ``key``, with or without a region."""
    if not key:
        return []
    region, core = split_region(key)
    if region:
        return [key, core]
    return [key, *(region + key for region in REGIONS)]


# Phones, credit codes and email domains -------------------------------------

_EXTENSION = re.compile(r"(?:转|分机|ext\.?|x|#)\s*\d+\s*$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_MIN_PHONE_DIGITS = 7


def normalize_phone(phone: str | None) -> str | None:
    """Return the comparison key of a Chinese phone number, or ``None``.

    Digits only, without the country code (``+86``, ``0086``) or an extension
    (``转8001``, ``ext. 8001``); an international landline gets its trunk ``0``
    back, so ``+86 21 6123 4567`` and ``021-6123 4567`` agree. Fewer than seven
    digits is no phone number.
    """
    if not phone:
        return None
    text = _EXTENSION.sub("", unicodedata.normalize("NFKC", phone).casefold()).strip()
    digits = re.sub(r"\D", "", text)
    international = text.startswith("+") or digits.startswith("0086")
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) >= 9:
            if prefix == "86" and not (international or len(digits) >= 12):
                continue
            digits, international = digits[len(prefix) :], True
            break
    if international and not (
        _MOBILE.match(digits) or digits.startswith(("0", "400", "800"))
    ):
        digits = "0" + digits
    return digits if len(digits) >= _MIN_PHONE_DIGITS else None


def normalize_credit_code(code: str | None) -> str | None:
    """Return a credit code upper-cased without spaces or hyphens, or ``None``."""
    if not code:
        return None
    cleaned = re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", code)).upper()
    return cleaned or None


PUBLIC_MAIL_DOMAINS = frozenset(
    {
        "qq.com",
        "vip.qq.com",
        "foxmail.com",
        "163.com",
        "vip.163.com",
        "126.com",
        "vip.126.com",
        "188.com",
        "yeah.net",
        "sina.com",
        "sina.cn",
        "vip.sina.com",
        "sohu.com",
        "139.com",
        "189.cn",
        "wo.cn",
        "21cn.com",
        "tom.com",
        "aliyun.com",
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "proton.me",
        "protonmail.com",
    }
)


def normalize_email_domain(value: str | None) -> str | None:
    """Return the lower-case domain of a domain or an address, or ``None``."""
    if not value:
        return None
    domain = unicodedata.normalize("NFKC", value).strip().casefold()
    domain = domain.rsplit("@", 1)[-1].strip(". ")
    domain = domain.removeprefix("www.")
    return domain or None


def company_email_domain(value: str | None) -> str | None:
    """Return the domain if it can identify a company (not a public mailbox)."""
    domain = normalize_email_domain(value)
    return None if domain in PUBLIC_MAIL_DOMAINS else domain


# Matching --------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateKeys:
    """The keys on which two account records are compared."""

    name: str
    region: str
    core: str
    credit_code: str | None
    phone: str | None
    email_domain: str | None


def duplicate_keys(
    *,
    name: str,
    credit_code: str | None = None,
    phone: str | None = None,
    email_domain: str | None = None,
) -> DuplicateKeys:
    """Return the comparison keys of a company as entered by a person."""
    return _keys(
        normalize_company_name(name),
        credit_code=credit_code,
        phone_key=normalize_phone(phone),
        email_domain=email_domain,
    )


def account_keys(account: Account) -> DuplicateKeys:
    """Return the comparison keys of a stored account (from its stored keys)."""
    return _keys(
        account.normalized_name,
        credit_code=account.credit_code,
        phone_key=account.phone_key,
        email_domain=account.email_domain,
    )


def _keys(
    name_key: str,
    *,
    credit_code: str | None,
    phone_key: str | None,
    email_domain: str | None,
) -> DuplicateKeys:
    region, core = split_region(name_key)
    return DuplicateKeys(
        name=name_key,
        region=region,
        core=core,
        credit_code=normalize_credit_code(credit_code),
        phone=phone_key,
        email_domain=company_email_domain(email_domain),
    )


def matched_on(first: DuplicateKeys, second: DuplicateKeys) -> tuple[str, ...]:
    """Return the keys on which two records agree; empty when they are distinct.

    The relation is symmetric: ``matched_on(a, b) == matched_on(b, a)``.
    """
    matched = []
    if first.credit_code and first.credit_code == second.credit_code:
        matched.append("credit_code")
    if first.name and first.name == second.name:
        matched.append("name")
    elif (
        first.core
        and first.core == second.core
        and not (first.region and second.region)
    ):
        matched.append("name_without_region")
    if first.phone and first.phone == second.phone:
        matched.append("phone")
    if first.email_domain and first.email_domain == second.email_domain:
        matched.append("email_domain")
    return tuple(matched)


_WEIGHTS = {
    "credit_code": 16,
    "name": 8,
    "phone": 4,
    "email_domain": 2,
    "name_without_region": 1,
}


@dataclass(frozen=True)
class DuplicateMatch:
    """An existing account that looks like the same company, and on which keys."""

    account_id: int
    name: str
    owner_id: int | None
    matched_on: tuple[str, ...]
    owner_name: str | None = None
    is_in_public_pool: bool = False


def find_account_duplicates(
    session: Session,
    *,
    name: str,
    credit_code: str | None = None,
    phone: str | None = None,
    email_domain: str | None = None,
    exclude_id: int | None = None,
) -> list[DuplicateMatch]:
    """Return the live accounts that match on any key, strongest evidence first.

    Merged accounts are never returned; their survivors are.
    """
    keys = duplicate_keys(
        name=name, credit_code=credit_code, phone=phone, email_domain=email_domain
    )
    return find_duplicates_of_keys(session, keys, exclude_ids=_ids(exclude_id))


def find_duplicates_of_keys(
    session: Session, keys: DuplicateKeys, *, exclude_ids: Iterable[int] = ()
) -> list[DuplicateMatch]:
    """Return the live accounts whose stored keys match ``keys``."""
    conditions: list[ColumnElement[bool]] = []
    lookup = name_lookup_keys(keys.name)
    if lookup:
        conditions.append(Account.normalized_name.in_(lookup))
    if keys.credit_code:
        conditions.append(Account.credit_code == keys.credit_code)
    if keys.phone:
        conditions.append(Account.phone_key == keys.phone)
    if keys.email_domain:
        conditions.append(Account.email_domain == keys.email_domain)
    if not conditions:
        return []
    statement = (
        select(Account, Employee.name)
        .outerjoin(Employee, Employee.id == Account.owner_id)
        .where(or_(*conditions), Account.merged_into_id.is_(None))
    )
    excluded = set(exclude_ids)
    matches = []
    for account, owner_name in session.execute(statement):
        matched = matched_on(keys, account_keys(account))
        if matched and account.id not in excluded:
            matches.append(
                DuplicateMatch(
                    account_id=account.id,
                    name=account.name,
                    owner_id=account.owner_id,
                    matched_on=matched,
                    owner_name=owner_name,
                    is_in_public_pool=account.is_in_public_pool,
                )
            )
    return sorted(matches, key=lambda match: (-_strength(match), match.account_id))


def _strength(match: DuplicateMatch) -> int:
    return sum(_WEIGHTS[key] for key in match.matched_on)


def _ids(value: int | None) -> tuple[int, ...]:
    return () if value is None else (value,)


def normalize_opportunity_name(name: str) -> str:
    """Return the comparison key of an opportunity name (width, case, separators)."""
    return "".join(re.sub(r"[()]", " ", _canonical_characters(name)).split())


def describe_match(match: DuplicateMatch) -> dict[str, object]:
    """Return a match as plain data for error details and API answers."""
    return {
        "account_id": match.account_id,
        "name": match.name,
        "owner_id": match.owner_id,
        "owner_name": match.owner_name,
        "is_in_public_pool": match.is_in_public_pool,
        "matched_on": list(match.matched_on),
    }
