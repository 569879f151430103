"""What the demo company sells and the words its customers are made of.

The demo company sells industrial IoT and manufacturing software: gateways
and sensors, MES/WMS licences, subscriptions and services. Its customers are
Chinese companies named the usual way: city + trade name (字号) + line of
business + legal form, e.g. 苏州恒远精密机械有限公司.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Industry:
    name: str
    weight: float
    business_words: tuple[str, ...]
    domain_hint: str


INDUSTRIES = (
    Industry(
        "制造业",
        30,
        ("精密机械", "机电设备", "智能装备", "模具", "汽车零部件", "重工"),
        "mfg",
    ),
    Industry("电子", 12, ("电子", "半导体", "光电科技", "电气"), "tech"),
    Industry("化工", 7, ("化工", "新材料", "精细化工", "涂料"), "chem"),
    Industry("医疗健康", 7, ("医疗器械", "生物科技", "制药"), "med"),
    Industry("食品饮料", 7, ("食品", "饮料", "乳业", "农业发展"), "food"),
    Industry("能源", 6, ("新能源", "光伏科技", "电力工程", "储能科技"), "energy"),
    Industry("物流", 7, ("物流", "供应链管理", "国际货运代理"), "logistics"),
    Industry("零售", 6, ("商贸", "连锁超市", "百货"), "retail"),
    Industry("建筑", 5, ("建设工程", "建筑科技", "工程设计"), "build"),
    Industry("纺织服装", 5, ("纺织", "服饰", "印染"), "textile"),
    Industry("信息技术", 8, ("信息技术", "软件", "网络科技", "数据科技"), "it"),
)
INDUSTRY_WEIGHTS = tuple(industry.weight for industry in INDUSTRIES)

# Trade-name characters (字号) with pinyin; two of them make a trade name.
_TRADE_NAME_TEXT = """
    恒:heng 远:yuan 华:hua 瑞:rui 鑫:xin 海:hai 天:tian 盛:sheng 金:jin 宏:hong
    泰:tai 新:xin 博:bo 康:kang 嘉:jia 联:lian 创:chuang 中:zhong 达:da 德:de
    安:an 汇:hui 信:xin 源:yuan 通:tong 益:yi 兴:xing 隆:long 丰:feng 宇:yu
    晨:chen 光:guang 明:ming 立:li 凯:kai 科:ke 聚:ju 诚:cheng 卓:zhuo 英:ying
    睿:rui 航:hang 昊:hao 星:xing 辰:chen 云:yun 峰:feng 润:run 铭:ming 亿:yi
    鼎:ding 祥:xiang 腾:teng 越:yue 锦:jin 力:li 正:zheng 永:yong
"""
TRADE_NAME_CHARACTERS: tuple[tuple[str, str], ...] = tuple(
    (item.split(":")[0], item.split(":")[1]) for item in _TRADE_NAME_TEXT.split()
)

LEGAL_FORMS = (("有限公司", 70), ("股份有限公司", 15), ("有限责任公司", 10))
GROUP_LEGAL_FORM = "集团有限公司"
TOP_LEVEL_DOMAINS = (".com", ".cn", ".com.cn", ".net")


@dataclass(frozen=True)
class AccountSize:
    """A company size band (企业规模), with how big and frequent its deals are."""

    name: str
    weight: float
    median_deal: int
    deal_weight: float


SIZES = (
    AccountSize("小微企业", 30, 60_000, 0.5),
    AccountSize("中型企业", 42, 220_000, 1.0),
    AccountSize("大型企业", 22, 900_000, 2.0),
    AccountSize("集团企业", 6, 2_600_000, 3.5),
)
SIZE_WEIGHTS = tuple(size.weight for size in SIZES)


@dataclass(frozen=True)
class ProductSpec:
    sku: str
    name: str
    category: str
    unit_price: Decimal


def _products(table: str) -> tuple[ProductSpec, ...]:
    products = []
    for line in table.strip().splitlines():
        sku, name, category, price = line.split()
        products.append(ProductSpec(sku, name, category, Decimal(price)))
    return tuple(products)


# sku name category unit-price (CNY)
PRODUCTS = _products(
    """
    WG-HW-101 数据采集网关 硬件 3999.00
    WG-HW-102 边缘计算盒子 硬件 12800.00
    WG-HW-103 视觉质检相机 硬件 26800.00
    WG-HW-104 智能电表 硬件 860.00
    WG-HW-105 温湿度传感器 硬件 320.00
    WG-HW-106 振动传感器 硬件 1450.00
    WG-HW-107 RFID读写器 硬件 2280.00
    WG-HW-108 工业交换机 硬件 5600.00
    WG-SW-201 工业物联网平台许可 软件许可 180000.00
    WG-SW-202 MES制造执行系统 软件许可 420000.00
    WG-SW-203 WMS仓储管理系统 软件许可 260000.00
    WG-SW-204 设备预测性维护模块 软件许可 150000.00
    WG-SW-205 能耗管理系统 软件许可 120000.00
    WG-SW-206 质量追溯系统 软件许可 160000.00
    WG-SW-207 数据中台 软件许可 380000.00
    WG-SW-208 BI报表模块 软件许可 68000.00
    WG-SW-209 安全审计模块 软件许可 88000.00
    WG-SW-210 数字孪生可视化 软件许可 240000.00
    WG-SW-211 私有化部署许可 软件许可 300000.00
    WG-SUB-301 云平台订阅（年） 订阅 36000.00
    WG-SUB-302 移动巡检App订阅（年） 订阅 12000.00
    WG-SUB-303 供应商协同平台订阅（年） 订阅 48000.00
    WG-SUB-304 碳排核算模块订阅（年） 订阅 30000.00
    WG-SVC-401 实施服务（人天） 服务 2200.00
    WG-SVC-402 定制开发（人天） 服务 2600.00
    WG-SVC-403 接口集成服务 服务 45000.00
    WG-SVC-404 培训服务（场） 服务 8000.00
    WG-SVC-405 年度运维服务 服务 60000.00
    WG-SVC-406 驻场运维（月） 服务 18000.00
    WG-SVC-407 咨询与规划 服务 90000.00
    """
)

PROJECT_NAMES = (
    "数字化工厂项目",
    "MES系统建设",
    "设备联网改造",
    "仓储管理升级",
    "能耗监测平台",
    "质量追溯系统",
    "数据中台建设",
    "预测性维护试点",
    "产线智能化改造",
    "年度运维续约",
    "云平台订阅",
    "视觉质检项目",
    "供应链协同平台",
    "碳排管理项目",
    "信息化二期",
    "新厂区智能化",
)

SOURCES = (
    ("官网咨询", 18),
    ("展会", 14),
    ("老客户转介绍", 16),
    ("渠道伙伴", 15),
    ("电话拜访", 12),
    ("线上广告", 8),
    ("招投标", 9),
    ("客户增购", 8),
)

LOSS_REASONS = (
    ("价格过高，客户选择了低价竞品", 26),
    ("客户预算被削减", 16),
    ("竞争对手关系更深", 14),
    ("项目被客户无限期搁置", 13),
    ("产品功能不满足核心需求", 10),
    ("决策人变更，项目重新评估", 8),
    ("客户决定自主研发", 5),
    ("交付周期无法满足客户要求", 5),
    ("商务条款未达成一致", 3),
)

PAIN_POINTS = (
    "设备停机频繁，缺少实时监控，故障发现滞后",
    "生产数据靠人工抄录，报表滞后两到三天",
    "库存账实不符，盘点耗时长，呆滞料多",
    "能耗成本逐年上升，无法定位高耗能环节",
    "质量问题难以追溯到批次和工序",
    "多套系统数据孤岛，管理层看不到全局数据",
    "客户审核要求全流程追溯，现有系统无法满足",
    "产能扩张后排产混乱，交期经常延误",
    "集团要求各工厂统一数据口径",
    "现有系统老旧，厂商已停止维护",
)

# (title, decision role) of the people met at a customer.
CONTACT_TITLES = {
    "decision_maker": ("总经理", "董事长", "副总经理", "首席信息官", "厂长"),
    "influencer": ("生产总监", "运营总监", "质量总监", "总经理助理"),
    "technical": ("IT经理", "信息中心主任", "技术总监", "自动化工程师"),
    "procurement": ("采购经理", "采购专员", "供应链经理"),
    "finance": ("财务总监", "财务经理"),
    "user": ("车间主任", "仓储主管", "设备主管", "计划主管"),
}

ACTIVITY_SUBJECTS = {
    "call": (
        "电话沟通项目进展",
        "电话确认需求细节",
        "电话跟进报价反馈",
        "回访使用情况",
    ),
    "meeting": ("方案交流会", "需求调研会", "商务谈判会议", "高层拜访会谈"),
    "visit": ("上门拜访客户", "工厂现场勘察", "陪同客户参观样板工厂"),
    "email": ("发送技术方案", "发送报价单", "发送合同草案", "发送会议纪要"),
    "note": ("客户内部组织架构整理", "竞争对手情况记录", "项目风险备注"),
    "task": ("准备投标文件", "安排售前演示", "提交特价审批"),
}
ACTIVITY_BODIES = (
    "客户对方案整体认可，希望下周给出分阶段实施计划。",
    "客户关注交付周期和本地化服务能力，已安排售前跟进。",
    "采购部门要求再给一轮报价，需申请特价。",
    "决策人出差，会议改期，需保持每周联系。",
    "客户提到竞争对手也在接触，价格压力较大。",
    "已完成现场演示，车间主任反馈良好。",
    "客户IT部门提出数据安全要求，需要私有化部署方案。",
    "预算已在年度计划中，预计本季度内走完审批流程。",
)
