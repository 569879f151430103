"""Chinese phrase templates for the demo behaviour stream (演示行为数据的话术模板).

Lines are grouped by topic; most topics are built around the phrases of the
default tracker dictionary (``signals/dictionaries/default_zh.yaml``) so that
the trackers have something real to find: price questions (能不能报个价),
objections (太贵了, 再考虑考虑), competitors (友商, 对比了几家), trials (申请试用),
procurement (走采购流程), decision makers (老板拍板). ``negated_pricing`` holds
lines that mention a tracker phrase under a negation (暂时不需要报价), and
``neutral`` small talk that should match nothing.

Placeholders filled per deal or per message: ``{name}`` how the rep addresses
the contact (王工, 李总), ``{topic}`` the deal's subject (MES系统),
``{competitor}`` a competitor's name, ``{boss}`` the customer's decision maker
as colleagues call them, ``{day}`` a day to meet.
"""

from __future__ import annotations

REP, CUSTOMER = 0, 1

# topic → (lines the rep writes, lines the customer writes)
CHAT_LINES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "neutral": (
        (
            "好的，收到。",
            "{day}方便吗？我们约个时间聊一下。",
            "{name}您好，上次说的资料我整理好了。",
            "好的，我这边安排一下。",
            "收到，谢谢{name}！",
            "没问题，我跟同事确认后回复您。",
            "不用客气，有问题随时找我。",
            "您看{day}可以吗？",
            "好的，那就这么定了。",
            "明白，我记下了。",
        ),
        (
            "好的收到",
            "嗯嗯，可以。",
            "{day}可以，三点以后吧。",
            "这周比较忙，下周再约吧。",
            "收到，谢谢。",
            "我在开会，晚点回你。",
            "可以，你发我邮箱吧。",
            "行，到时候电话联系。",
            "好的，辛苦了。",
            "👌",
        ),
    ),
    "needs": (
        (
            "想了解一下贵司目前{topic}这块是怎么做的？",
            "现场大概有多少台设备需要接入？",
            "我们整理了一份调研问卷，麻烦{name}帮忙填一下。",
            "您这边最关心的是哪几个问题？",
            "现在用的系统是哪一年上线的？",
        ),
        (
            "现在主要靠人工抄表，数据很滞后。",
            "我们有三个车间，两百多台设备。",
            "主要是想解决质量追溯的问题。",
            "老系统用了很多年了，想换掉。",
            "车间的报表要两三天才能出来，管理层很不满意。",
        ),
    ),
    "pricing": (
        (
            "报价单已发您邮箱，请查收。",
            "我先按标准配置给您报个价。",
            "价格这块我申请一下特价，明天回复您。",
            "这个是含税价，包含一年的维保费。",
            "{topic}按年付的话费用会低一些。",
        ),
        (
            "能不能报个价？",
            "价格方面大概是什么范围？",
            "这套系统大概多少钱？",
            "实施费和维保费怎么收费？",
            "能不能给个含税价，我们好做预算。",
            "价格方面能不能再优惠一点？",
            "有没有折扣？量大能便宜点吗？",
        ),
    ),
    "negated_pricing": (
        (
            "方案先发您看看，暂时不报价，等需求确认了再说。",
            "报价就先不用了，方案您先看看。",
        ),
        (
            "暂时不需要报价，先看看方案。",
            "报价就不用了，我们先内部评估。",
            "先不用报价，等需求确定了再说。",
            "试用就不用了，直接看案例吧。",
            "暂时不考虑试点，明年规划了再说。",
        ),
    ),
    "objection": (
        (
            "理解，价格这块我们可以分期实施。",
            "您担心的主要是哪方面？我们可以安排技术同事详细讲一下。",
            "周期这块我们可以先上核心模块。",
        ),
        (
            "太贵了，超出我们的预期了。",
            "价格偏高，我们领导接受不了。",
            "我们再考虑考虑。",
            "这个周期太长了，我们等不了。",
            "功能有点复杂，担心一线员工不好用。",
            "今年不是时候，明年再说吧。",
            "说实话有点贵，性价比不高。",
            "我们现在没这个需求了。",
            "有点担心数据安全的问题。",
            "预算不够，这个价格我们接受不了。",
        ),
    ),
    "competitor": (
        (
            "{competitor}主要做通用软件，我们在制造现场这块更专业。",
            "和友商比，我们的优势是本地化实施团队。",
            "其他厂商的方案您方便发我看看吗？",
        ),
        (
            "我们也在看{competitor}的方案，友商报价更低。",
            "{competitor}的报价比你们低不少，你们有什么优势？",
            "友商那边也来演示过了。",
            "我们对比了几家，还在评估。",
            "别家说可以免费做接口。",
            "另外两家的方案我们也在看。",
            "{competitor}那边说两个月就能上线，比你们快。",
        ),
    ),
    "trial": (
        (
            "试用账号已经开好了，账号密码发您微信了。",
            "我们可以先做一个POC，两周左右。",
            "试用期一个月，有问题随时找我。",
            "测试环境已经搭好，您可以先登录看看。",
        ),
        (
            "能不能先申请试用？",
            "有没有免费试用账号？",
            "我们想先小范围试点一下。",
            "可以先搭个测试环境吗？",
            "试用版能接几台设备？",
        ),
    ),
    "tender": (
        (
            "投标文件我们已经在准备了。",
            "请问招标公告什么时候发？",
            "标书里的技术参数我们逐条核对过了。",
        ),
        (
            "这个项目金额比较大，要走公开招标。",
            "招标文件下周挂网，你们留意一下。",
            "标书要求盖章原件。",
            "下周三开标，记得带投标保证金回执。",
        ),
    ),
    "procurement": (
        (
            "供应商注册资料已经提交了。",
            "请问采购订单大概什么时候能下？",
            "开票信息麻烦发我一下。",
            "付款方式我们可以按三三四来。",
        ),
        (
            "这个要走采购流程，我先提请购。",
            "你们先做一下供应商入库。",
            "OA审批走完就可以下PO了。",
            "付款方式是三三四，尾款验收后付。",
            "发票开专票。",
            "采购部那边还要比价，你们准备一下。",
        ),
    ),
    "legal": (
        (
            "合同草稿发您邮箱了，麻烦法务审阅。",
            "源代码托管条款我们可以调整。",
            "保密协议我们这边已经盖章了。",
        ),
        (
            "合同模板发一下，我们法务要看一下条款。",
            "需要先签保密协议。",
            "违约责任这条我们法务还要再看。",
            "合同已经盖章了，寄给你们。",
            "等保的材料你们能提供吗？",
        ),
    ),
    "budget": (
        (
            "请问这个项目的预算大概在什么范围？",
            "预算立项需要我们提供什么材料？",
        ),
        (
            "今年的项目预算已经批了。",
            "预算还没立项，得等下个季度。",
            "专项资金到位了就可以启动。",
        ),
    ),
    "decision_maker": (
        (
            "能不能约一下{boss}，我们当面汇报一下方案？",
            "决策层那边还需要我们准备什么材料？",
            "这个项目最终是谁拍板？",
        ),
        (
            "这个事得老板拍板。",
            "我跟领导汇报一下再回复你。",
            "最终决定要董事会批。",
            "{boss}下周有空，可以约他聊一下。",
            "{boss}说了，方案没问题就签字。",
        ),
    ),
    "positive": (
        (
            "太好了，我们马上安排实施团队。",
            "感谢支持！后续有问题随时联系我。",
            "上线计划我今天整理出来发您。",
        ),
        (
            "方案我们很认可，下周内部过一下。",
            "演示效果不错，车间主任很满意。",
            "没问题，就按这个推进。",
            "上线时间能不能提前一点？",
        ),
    ),
    "ghost": (
        (
            "{name}，上次的方案您看了吗？",
            "{name}您好，方便的时候回复一下。",
            "最近项目有进展吗？有需要随时找我。",
            "打扰了，想跟您确认一下项目还在推进吗？",
            "{name}，节后有空的话我们再碰一下？",
        ),
        (),
    ),
}

TOPICS = tuple(CHAT_LINES)

# Stage phase (0 early: lead and discovery, 1 middle, 2 late: contract) →
# topic weights; the deal's outcome tilts them further (OUTCOME_TILT).
PHASE_TOPIC_WEIGHTS: tuple[dict[str, float], ...] = (
    {
        "neutral": 30,
        "needs": 25,
        "trial": 8,
        "pricing": 8,
        "negated_pricing": 6,
        "competitor": 4,
        "budget": 5,
        "decision_maker": 3,
        "objection": 4,
        "positive": 3,
    },
    {
        "neutral": 25,
        "needs": 6,
        "pricing": 18,
        "negated_pricing": 3,
        "trial": 8,
        "competitor": 8,
        "tender": 5,
        "budget": 6,
        "decision_maker": 6,
        "objection": 7,
        "positive": 5,
        "legal": 2,
        "procurement": 3,
    },
    {
        "neutral": 25,
        "pricing": 10,
        "procurement": 14,
        "legal": 12,
        "decision_maker": 8,
        "competitor": 4,
        "objection": 5,
        "positive": 10,
        "tender": 4,
        "budget": 3,
    },
)

OUTCOME_TILT: dict[str, dict[str, float]] = {
    "won": {
        "positive": 1.8,
        "procurement": 1.5,
        "legal": 1.5,
        "decision_maker": 1.5,
        "objection": 0.5,
        "competitor": 0.7,
    },
    "lost": {
        "objection": 3.0,
        "competitor": 2.5,
        "negated_pricing": 1.5,
        "positive": 0.4,
        "procurement": 0.6,
        "legal": 0.6,
    },
    "open": {},
}

DEAL_TOPICS = (
    "MES系统",
    "设备联网",
    "仓储管理",
    "能耗监测",
    "质量追溯",
    "数据中台",
    "预测性维护",
    "视觉质检",
)
COMPETITORS = ("智云工联", "恒拓软件", "博科智造", "启衡科技", "数擎工业")
MEETING_DAYS = ("明天下午", "周四上午", "下周一", "周五下午", "后天上午", "下周三")

EMAIL_SENT_SUBJECTS = (
    "{topic}技术方案",
    "关于{topic}项目的报价单",
    "会议纪要：{topic}需求沟通",
    "合同草案请审阅",
    "试用账号开通通知",
    "客户案例分享：同行业{topic}项目",
    "实施计划（初稿）",
)
EMAIL_RECEIVED_SUBJECTS = (
    "回复：{topic}技术方案",
    "回复：报价单",
    "采购流程说明",
    "供应商入库资料清单",
    "招标文件及评分办法",
    "回复：合同草案请审阅",
)
EMAIL_OPENING = "{name}您好：\n"
EMAIL_CLOSING = "\n此致\n敬礼"
MINUTES_HEADING = "会议纪要（{topic}）\n"

# (file name, pages): what reps send and customers open.
MATERIALS = (
    ("产品白皮书.pdf", 24),
    ("{topic}解决方案.pptx", 36),
    ("客户案例集.pdf", 18),
    ("报价单.pdf", 3),
    ("实施方案.docx", 15),
    ("产品演示视频.mp4", 1),
    ("安全与合规说明.pdf", 12),
)
TASK_TITLES = (
    "准备投标文件",
    "安排售前演示",
    "提交特价审批",
    "整理需求调研报告",
    "发送会议纪要",
    "预约高层拜访",
    "准备POC环境",
)
TICKET_TITLES = (
    "试用账号无法登录",
    "数据采集网关连不上平台",
    "报表导出中文乱码",
    "测试环境访问很慢",
    "设备数据延迟超过五分钟",
)
MEETING_TITLES = (
    "方案交流会",
    "需求调研会",
    "商务谈判会议",
    "高层拜访会谈",
    "产品演示",
)
VISIT_PURPOSES = ("上门拜访", "工厂现场勘察", "陪同参观样板工厂", "项目启动会")
FIELD_UPDATES = ("expected_close_on", "amount", "next_step", "forecast_category")

__all__ = [
    "CHAT_LINES",
    "COMPETITORS",
    "CUSTOMER",
    "DEAL_TOPICS",
    "OUTCOME_TILT",
    "PHASE_TOPIC_WEIGHTS",
    "REP",
    "TOPICS",
]
