"""Where the demo company sells: sales regions, provinces and cities.

Five sales regions (大区) split into two sub-regions each, the way Chinese sales
organisations usually carve up the mainland. Each city has its province, real
approximate coordinates (WGS-84, two decimals), its administrative division
code (GB/T 2260, used in unified social credit codes), its telephone area
code and a weight that roughly follows the size of its economy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SalesRegion:
    code: str
    name: str
    parent: str | None = None
    provinces: tuple[str, ...] = ()


@dataclass(frozen=True)
class City:
    name: str
    province: str
    latitude: float
    longitude: float
    division_code: str
    area_code: str
    weight: float


REGIONS = (
    SalesRegion("east", "华东大区"),
    SalesRegion("east-1", "华东一区（沪苏皖）", "east", ("上海", "江苏", "安徽")),
    SalesRegion("east-2", "华东二区（浙闽鲁）", "east", ("浙江", "福建", "山东")),
    SalesRegion("south", "华南大区"),
    SalesRegion("south-1", "华南一区（广东）", "south", ("广东",)),
    SalesRegion("south-2", "华南二区（桂琼）", "south", ("广西", "海南")),
    SalesRegion("north", "华北大区"),
    SalesRegion("north-1", "华北一区（京津冀）", "north", ("北京", "天津", "河北")),
    SalesRegion(
        "north-2",
        "华北二区（晋蒙及东北）",
        "north",
        ("山西", "内蒙古", "辽宁", "吉林", "黑龙江"),
    ),
    SalesRegion("southwest", "西南大区"),
    SalesRegion("southwest-1", "西南一区（川渝）", "southwest", ("四川", "重庆")),
    SalesRegion(
        "southwest-2",
        "西南二区（云贵陕甘）",
        "southwest",
        ("云南", "贵州", "陕西", "甘肃"),
    ),
    SalesRegion("central", "华中大区"),
    SalesRegion("central-1", "华中一区（两湖）", "central", ("湖北", "湖南")),
    SalesRegion("central-2", "华中二区（豫赣）", "central", ("河南", "江西")),
)

TOP_REGIONS = tuple(region for region in REGIONS if region.parent is None)
SUB_REGIONS = tuple(region for region in REGIONS if region.parent is not None)

PROVINCE_FULL_NAMES = {
    "上海": "上海市",
    "北京": "北京市",
    "天津": "天津市",
    "重庆": "重庆市",
    "内蒙古": "内蒙古自治区",
    "广西": "广西壮族自治区",
}

MUNICIPALITIES = frozenset({"上海", "北京", "天津", "重庆"})


def province_full_name(province: str) -> str:
    """Return the official name of a province, e.g. 江苏 → 江苏省."""
    return PROVINCE_FULL_NAMES.get(province, province + "省")


def _parse_cities(table: str) -> tuple[City, ...]:
    cities = []
    for line in table.strip().splitlines():
        name, province, lat, lon, division, area, weight = line.split()
        cities.append(
            City(
                name=name,
                province=province,
                latitude=float(lat),
                longitude=float(lon),
                division_code=division,
                area_code=area,
                weight=float(weight),
            )
        )
    return tuple(cities)


# name province latitude longitude division-code area-code weight
CITIES = _parse_cities(
    """
    上海 上海 31.23 121.47 310000 021 10
    南京 江苏 32.06 118.80 320100 025 5
    苏州 江苏 31.30 120.62 320500 0512 7
    无锡 江苏 31.49 120.31 320200 0510 4
    常州 江苏 31.81 119.97 320400 0519 3
    南通 江苏 31.98 120.89 320600 0513 3
    徐州 江苏 34.26 117.18 320300 0516 2
    合肥 安徽 31.82 117.23 340100 0551 3
    芜湖 安徽 31.35 118.43 340200 0553 1.5
    杭州 浙江 30.27 120.16 330100 0571 6
    宁波 浙江 29.87 121.55 330200 0574 4
    温州 浙江 28.00 120.70 330300 0577 2.5
    嘉兴 浙江 30.75 120.76 330400 0573 2
    绍兴 浙江 30.00 120.58 330600 0575 2
    金华 浙江 29.08 119.65 330700 0579 1.5
    台州 浙江 28.66 121.42 331000 0576 1.5
    福州 福建 26.07 119.30 350100 0591 3
    厦门 福建 24.48 118.09 350200 0592 2.5
    泉州 福建 24.87 118.68 350500 0595 3
    济南 山东 36.65 117.12 370100 0531 3.5
    青岛 山东 36.07 120.38 370200 0532 4
    烟台 山东 37.46 121.45 370600 0535 2
    潍坊 山东 36.71 119.16 370700 0536 2
    广州 广东 23.13 113.26 440100 020 8
    深圳 广东 22.54 114.06 440300 0755 9
    东莞 广东 23.02 113.75 441900 0769 4
    佛山 广东 23.02 113.12 440600 0757 4
    珠海 广东 22.27 113.58 440400 0756 1.5
    中山 广东 22.52 113.39 442000 0760 1.5
    惠州 广东 23.11 114.42 441300 0752 1.5
    汕头 广东 23.35 116.68 440500 0754 1
    南宁 广西 22.82 108.32 450100 0771 2
    柳州 广西 24.33 109.41 450200 0772 1
    桂林 广西 25.27 110.29 450300 0773 0.8
    海口 海南 20.04 110.20 460100 0898 1
    三亚 海南 18.25 109.51 460200 0898 0.5
    北京 北京 39.90 116.41 110000 010 10
    天津 天津 39.08 117.20 120000 022 4
    石家庄 河北 38.04 114.51 130100 0311 2
    唐山 河北 39.63 118.18 130200 0315 2
    保定 河北 38.87 115.46 130600 0312 1
    太原 山西 37.87 112.55 140100 0351 1.5
    呼和浩特 内蒙古 40.84 111.75 150100 0471 1
    包头 内蒙古 40.66 109.84 150200 0472 1
    沈阳 辽宁 41.80 123.43 210100 024 2.5
    大连 辽宁 38.91 121.61 210200 0411 2.5
    长春 吉林 43.82 125.32 220100 0431 1.5
    哈尔滨 黑龙江 45.80 126.53 230100 0451 1.5
    成都 四川 30.57 104.07 510100 028 6
    绵阳 四川 31.47 104.68 510700 0816 1
    重庆 重庆 29.56 106.55 500000 023 6
    昆明 云南 25.04 102.71 530100 0871 2
    贵阳 贵州 26.65 106.63 520100 0851 1.5
    西安 陕西 34.34 108.94 610100 029 3.5
    兰州 甘肃 36.06 103.83 620100 0931 1
    武汉 湖北 30.59 114.31 420100 027 5
    宜昌 湖北 30.69 111.29 420500 0717 1
    长沙 湖南 28.23 112.94 430100 0731 4
    株洲 湖南 27.83 113.13 430200 0731 1
    郑州 河南 34.75 113.63 410100 0371 4
    洛阳 河南 34.62 112.45 410300 0379 1.5
    南昌 江西 28.68 115.86 360100 0791 2
    赣州 江西 25.83 114.93 360700 0797 1
    """
)

# Districts and roads common to most Chinese cities; an address combines them.
DISTRICTS = (
    "高新区",
    "经济技术开发区",
    "工业园区",
    "新区",
    "城东区",
    "城南区",
    "滨江区",
    "临港产业园",
    "科技园",
    "保税区",
    "软件园",
    "中心城区",
)
ROADS = (
    "人民路",
    "中山路",
    "建设路",
    "解放路",
    "长江路",
    "黄河路",
    "科技路",
    "创新大道",
    "工业大道",
    "新华路",
    "文化路",
    "和平路",
    "友谊路",
    "学府路",
    "金桥路",
    "星湖街",
    "锦绣大道",
    "振兴路",
    "迎宾大道",
    "湖滨路",
)


def sub_region_of(province: str) -> SalesRegion:
    """Return the sales sub-region that covers ``province``."""
    return next(region for region in SUB_REGIONS if province in region.provinces)
