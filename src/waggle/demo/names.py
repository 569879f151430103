"""Chinese personal names for the demo company: surnames, given names, pinyin.

Surnames carry rough frequency weights (per mille of the population, rounded)
so that 王, 李 and 张 dominate as they do in China. Given names are one or two
characters drawn from lists that lean male, female or neither; every character
carries its pinyin so that email addresses can be spelled from names.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass


def _parse(table: str) -> list[tuple[str, str, float]]:
    """Read ``字:pinyin:weight`` entries separated by whitespace."""
    entries = []
    for item in table.split():
        text, pinyin, weight = item.split(":")
        entries.append((text, pinyin, float(weight)))
    return entries


SURNAMES = _parse(
    """
    王:wang:71 李:li:70 张:zhang:64 刘:liu:53 陈:chen:45 杨:yang:31 黄:huang:22
    赵:zhao:22 吴:wu:20 周:zhou:19 徐:xu:16 孙:sun:15 马:ma:15 朱:zhu:14
    胡:hu:13 郭:guo:12 何:he:11 高:gao:11 林:lin:11 罗:luo:10 郑:zheng:10
    梁:liang:9 谢:xie:8 宋:song:8 唐:tang:8 许:xu:7 韩:han:7 冯:feng:7 邓:deng:7
    曹:cao:7 彭:peng:6 曾:zeng:6 肖:xiao:6 田:tian:6 董:dong:5 袁:yuan:5
    潘:pan:5 于:yu:5 蒋:jiang:5 蔡:cai:5 余:yu:5 杜:du:5 叶:ye:5 程:cheng:5
    苏:su:4 魏:wei:4 吕:lv:4 丁:ding:4 任:ren:4 沈:shen:4 姚:yao:4 卢:lu:4
    姜:jiang:3 崔:cui:3 钟:zhong:3 谭:tan:3 陆:lu:3 汪:wang:3 范:fan:3 金:jin:3
    石:shi:3 廖:liao:3 贾:jia:3 夏:xia:3 韦:wei:3 付:fu:3 方:fang:3 白:bai:2
    邹:zou:2 孟:meng:2 熊:xiong:2 秦:qin:2 邱:qiu:2 江:jiang:2 尹:yin:2 薛:xue:2
    闫:yan:2 段:duan:2 雷:lei:2 侯:hou:2 龙:long:2 史:shi:2 陶:tao:2 黎:li:2
    贺:he:2 顾:gu:2 毛:mao:2 郝:hao:2 龚:gong:2 邵:shao:2 万:wan:2 钱:qian:2
    严:yan:2 覃:qin:1 武:wu:1 戴:dai:1 莫:mo:1 孔:kong:1 向:xiang:1 汤:tang:1
    欧阳:ouyang:0.5 司马:sima:0.1 上官:shangguan:0.1 诸葛:zhuge:0.1
    """
)

GIVEN_MALE = _parse(
    """
    伟:wei:1 强:qiang:1 磊:lei:1 军:jun:1 勇:yong:1 杰:jie:1 涛:tao:1 斌:bin:1
    超:chao:1 明:ming:1 刚:gang:1 鹏:peng:1 辉:hui:1 华:hua:1 飞:fei:1 鑫:xin:1
    波:bo:1 宇:yu:1 浩:hao:1 凯:kai:1 健:jian:1 俊:jun:1 帆:fan:1 帅:shuai:1
    旭:xu:1 宁:ning:1 龙:long:1 林:lin:1 峰:feng:1 建:jian:1 国:guo:1 志:zhi:1
    文:wen:1 博:bo:1 晨:chen:1 阳:yang:1 东:dong:1 亮:liang:1 海:hai:1 成:cheng:1
    """
)

GIVEN_FEMALE = _parse(
    """
    芳:fang:1 娜:na:1 敏:min:1 静:jing:1 丽:li:1 艳:yan:1 娟:juan:1 霞:xia:1
    燕:yan:1 玲:ling:1 婷:ting:1 雪:xue:1 慧:hui:1 颖:ying:1 琳:lin:1 晶:jing:1
    倩:qian:1 洁:jie:1 萍:ping:1 红:hong:1 梅:mei:1 莉:li:1 欣:xin:1 悦:yue:1
    佳:jia:1 琪:qi:1 璐:lu:1 瑶:yao:1 薇:wei:1 蕾:lei:1 楠:nan:1 怡:yi:1
    """
)

GIVEN_NEUTRAL = _parse(
    """
    子:zi:1 一:yi:1 思:si:1 嘉:jia:1 安:an:1 宏:hong:1 泽:ze:1 晓:xiao:1
    新:xin:1 春:chun:1 秋:qiu:1 云:yun:1 天:tian:1 雨:yu:1 清:qing:1 永:yong:1
    立:li:1 家:jia:1 德:de:1 振:zhen:1 小:xiao:1 远:yuan:1 梓:zi:1 若:ruo:1
    """
)

_SURNAME_WEIGHTS = list(itertools.accumulate(weight for *_, weight in SURNAMES))


@dataclass(frozen=True)
class PersonName:
    """A person's name in characters, with its pinyin split into surname and given."""

    surname: str
    given: str
    surname_pinyin: str
    given_pinyin: str

    @property
    def full(self) -> str:
        return self.surname + self.given

    @property
    def email_local(self) -> str:
        """Return the usual Chinese corporate mailbox name, e.g. ``zhangwei``."""
        return f"{self.given_pinyin}.{self.surname_pinyin}"


def random_name(rng: random.Random) -> PersonName:
    """Draw one name: a weighted surname and a one- or two-character given name."""
    surname, surname_pinyin, _weight = rng.choices(
        SURNAMES, cum_weights=_SURNAME_WEIGHTS
    )[0]
    pool = rng.choice((GIVEN_MALE, GIVEN_FEMALE))
    first = rng.choice(pool)
    if rng.random() < 0.3:
        return PersonName(surname, first[0], surname_pinyin, first[1])
    second = rng.choice(pool + GIVEN_NEUTRAL)
    while second[0] == first[0]:
        second = rng.choice(pool + GIVEN_NEUTRAL)
    leading, trailing = (second, first) if rng.random() < 0.5 else (first, second)
    return PersonName(
        surname,
        leading[0] + trailing[0],
        surname_pinyin,
        leading[1] + trailing[1],
    )
