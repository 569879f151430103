"""User-facing strings of one area of pages, in zh-CN and en.

Merged into :data:`waggle.web.i18n.CATALOGUES`; both dictionaries hold the
same keys (a test checks it).
"""

from __future__ import annotations

ZH_CN: dict[str, str] = {
    "governance.title": "数据治理",
    "governance.subtitle": "数据分级、访问策略、导出审批与防篡改审计日志",
    "governance.sections": "数据治理栏目",
    "governance.section_catalogue": "数据目录",
    "governance.section_catalogue_about": (
        "每个字段的 GB/T 43697 数据级别、敏感等级和个人信息标记；由数据所有者维护。"
    ),
    "governance.section_policies": "访问策略",
    "governance.section_policies_about": (
        "行范围、资源权限、按等级脱敏和仅聚合访问规则，以及策略版本。"
    ),
    "governance.section_approvals": "导出审批",
    "governance.section_approvals_about": (
        "申请签名导出；合规专员审批或驳回；下载经双签名的导出包。"
    ),
    "governance.section_audit": "审计日志",
    "governance.section_audit_about": (
        "按操作人、操作、资源和日期查看审计日志，并验证哈希链与签名检查点。"
    ),
    "governance.policy_version": "策略版本：{version}",
    "governance.catalogue_subtitle": "依 GB/T 43697-2024 分为一般、重要、核心数据",
    "governance.catalogue_read_only": "只读：仅数据所有者可以修改字段分级。",
    "governance.catalogue_saved": "已保存 {field} 的分级。",
    "governance.catalogue_empty": "目录中没有字段。",
    "governance.table": "数据表",
    "governance.all_tables": "全部数据表",
    "governance.column": "字段",
    "governance.level": "数据级别",
    "governance.level_general": "一般",
    "governance.level_important": "重要",
    "governance.level_core": "核心",
    "governance.grade": "敏感等级",
    "governance.grade_public": "公开",
    "governance.grade_internal": "内部",
    "governance.grade_confidential": "机密",
    "governance.grade_secret": "绝密",
    "governance.personal": "个人信息",
    "governance.sensitive_personal": "敏感个人信息",
    "governance.mask_format": "脱敏格式",
    "governance.edit": "修改",
    "governance.save": "保存",
    "governance.cancel": "取消",
    "governance.policies_read_only": (
        "本页只读。修改策略请复制 default_policy.yaml，编辑后将环境变量"
        " WAGGLE_POLICY_FILE 指向该文件并重启 Waggle（由 IT 管理员部署）。"
    ),
    "governance.row_scopes": "行范围",
    "governance.role": "角色",
    "governance.scope": "可见范围",
    "governance.scope_none": "无",
    "governance.scope_own": "本人",
    "governance.scope_team": "本团队",
    "governance.scope_region": "本区域",
    "governance.scope_all": "全部",
    "governance.permissions": "资源权限",
    "governance.resource": "资源",
    "governance.owned": "按负责人",
    "governance.action_read": "查看",
    "governance.action_create": "新建",
    "governance.action_update": "修改",
    "governance.action_delete": "删除",
    "governance.action_import": "导入",
    "governance.action_export": "导出",
    "governance.action_verify": "验证",
    "governance.action_checkpoint": "签名检查点",
    "governance.action_approve": "审批",
    "governance.masking": "按敏感等级脱敏",
    "governance.owner_sees_full": "负责人看完整值",
    "governance.mask_kinds": "脱敏方式（由窄到宽）：{kinds}",
    "governance.mask_default": "默认",
    "governance.mask_by_role": "按角色",
    "governance.aggregates": "仅聚合访问",
    "governance.aggregates_limits": (
        "每组至少 {size} 行，否则不显示；与最近 {history} 次查询比对以防差分攻击。"
    ),
    "governance.aggregates_none": "策略中没有聚合规则。",
    "governance.dimensions": "分组维度",
    "governance.measures": "指标",
    "governance.approvals_subtitle": (
        "导出须经合规专员审批，审批人不得是申请人或可修改策略、分级的人。"
    ),
    "governance.request_export": "申请导出",
    "governance.purpose": "用途",
    "governance.request": "提交申请",
    "governance.status": "状态",
    "governance.all_statuses": "全部状态",
    "governance.status_pending": "待审批",
    "governance.status_approved": "已批准",
    "governance.status_rejected": "已驳回",
    "governance.requested_by": "申请人",
    "governance.decided_by": "审批人",
    "governance.package": "导出包",
    "governance.package_rows": "{rows} 行",
    "governance.actions": "操作",
    "governance.approve": "批准",
    "governance.reject": "驳回",
    "governance.reject_reason": "驳回理由",
    "governance.download": "下载",
    "governance.approvals_empty": "没有导出申请。",
    "governance.approvals_requested": "已提交导出申请 #{id}，等待合规专员审批。",
    "governance.approvals_approved": "已批准导出申请 #{id}，导出包已签名。",
    "governance.approvals_rejected": "已驳回导出申请 #{id}。",
    "governance.audit_subtitle": "每条记录链接前一条的哈希；检查点由 IT 管理员签名。",
    "governance.verify": "验证审计链",
    "governance.verify_ok": (
        "审计链完整：{entries} 条记录、{checkpoints} 个检查点、"
        "已验证 {signatures} 个签名。"
    ),
    "governance.verify_failed": "审计链验证失败：第 {seq} 条：{message}",
    "governance.checkpoint": (
        "最新签名检查点：第 {seq_from}–{seq_to} 条，Merkle 根 {root}，"
        "签名密钥 {fingerprint}，签于 {at}"
    ),
    "governance.checkpoint_none": "尚无签名检查点。",
    "governance.actor": "操作人",
    "governance.action": "操作",
    "governance.since": "起始日期",
    "governance.until": "截止日期",
    "governance.seq": "序号",
    "governance.occurred_at": "时间",
    "governance.records": "记录",
    "governance.result": "结果",
    "governance.detail": "详情",
    "governance.audit_empty": "没有符合条件的审计记录。",
    "governance.paging": "翻页",
}

EN: dict[str, str] = {
    "governance.title": "Data governance",
    "governance.subtitle": (
        "Classification, access policy, export approvals and the tamper-evident"
        " audit log"
    ),
    "governance.sections": "Governance sections",
    "governance.section_catalogue": "Data catalogue",
    "governance.section_catalogue_about": (
        "Every field's GB/T 43697 level, grade and personal-information flags;"
        " maintained by the data owner."
    ),
    "governance.section_policies": "Access policy",
    "governance.section_policies_about": (
        "Row scopes, resource permissions, masking per grade, aggregate-only"
        " rules and the policy version."
    ),
    "governance.section_approvals": "Export approvals",
    "governance.section_approvals_about": (
        "Request a signed export; compliance approves or rejects it; download"
        " the package both signed."
    ),
    "governance.section_audit": "Audit log",
    "governance.section_audit_about": (
        "Review the audit log by actor, action, resource and date; verify the"
        " hash chain and its signed checkpoints."
    ),
    "governance.policy_version": "Policy version: {version}",
    "governance.catalogue_subtitle": (
        "Levels per GB/T 43697-2024: general, important and core data"
    ),
    "governance.catalogue_read_only": (
        "Read only: only the data owner may change a field's classification."
    ),
    "governance.catalogue_saved": "Saved the classification of {field}.",
    "governance.catalogue_empty": "The catalogue has no fields.",
    "governance.table": "Table",
    "governance.all_tables": "All tables",
    "governance.column": "Field",
    "governance.level": "Level",
    "governance.level_general": "general",
    "governance.level_important": "important",
    "governance.level_core": "core",
    "governance.grade": "Grade",
    "governance.grade_public": "Public",
    "governance.grade_internal": "Internal",
    "governance.grade_confidential": "Confidential",
    "governance.grade_secret": "Secret",
    "governance.personal": "Personal information",
    "governance.sensitive_personal": "Sensitive personal information",
    "governance.mask_format": "Mask format",
    "governance.edit": "Edit",
    "governance.save": "Save",
    "governance.cancel": "Cancel",
    "governance.policies_read_only": (
        "This page is read only. To change the policy, copy default_policy.yaml,"
        " edit it, point WAGGLE_POLICY_FILE at it and restart Waggle (IT deploys"
        " it)."
    ),
    "governance.row_scopes": "Row scopes",
    "governance.role": "Role",
    "governance.scope": "Scope",
    "governance.scope_none": "none",
    "governance.scope_own": "own",
    "governance.scope_team": "team",
    "governance.scope_region": "region",
    "governance.scope_all": "all",
    "governance.permissions": "Resource permissions",
    "governance.resource": "Resource",
    "governance.owned": "Owned rows",
    "governance.action_read": "Read",
    "governance.action_create": "Create",
    "governance.action_update": "Update",
    "governance.action_delete": "Delete",
    "governance.action_import": "Import",
    "governance.action_export": "Export",
    "governance.action_verify": "Verify",
    "governance.action_checkpoint": "Checkpoint",
    "governance.action_approve": "Approve",
    "governance.masking": "Masking per grade",
    "governance.owner_sees_full": "Owner sees the full value",
    "governance.mask_kinds": "Mask kinds, narrowest first: {kinds}",
    "governance.mask_default": "Default",
    "governance.mask_by_role": "By role",
    "governance.aggregates": "Aggregate-only access",
    "governance.aggregates_limits": (
        "Groups of fewer than {size} rows are suppressed; queries are compared"
        " with the last {history} to refuse differencing."
    ),
    "governance.aggregates_none": "The policy has no aggregate rules.",
    "governance.dimensions": "Dimensions",
    "governance.measures": "Measures",
    "governance.approvals_subtitle": (
        "A compliance officer approves every export, never its requester nor"
        " someone who may change a policy or a classification."
    ),
    "governance.request_export": "Request an export",
    "governance.purpose": "Purpose",
    "governance.request": "Request",
    "governance.status": "Status",
    "governance.all_statuses": "All statuses",
    "governance.status_pending": "Pending",
    "governance.status_approved": "Approved",
    "governance.status_rejected": "Rejected",
    "governance.requested_by": "Requested by",
    "governance.decided_by": "Decided by",
    "governance.package": "Package",
    "governance.package_rows": "{rows} rows",
    "governance.actions": "Actions",
    "governance.approve": "Approve",
    "governance.reject": "Reject",
    "governance.reject_reason": "Reason for rejecting",
    "governance.download": "Download",
    "governance.approvals_empty": "No export requests.",
    "governance.approvals_requested": (
        "Export request #{id} sent; it waits for a compliance officer."
    ),
    "governance.approvals_approved": (
        "Export request #{id} approved; the package is signed."
    ),
    "governance.approvals_rejected": "Export request #{id} rejected.",
    "governance.audit_subtitle": (
        "Each entry links the hash of the one before; IT signs the checkpoints."
    ),
    "governance.verify": "Verify the audit chain",
    "governance.verify_ok": (
        "The audit chain is intact: {entries} entries, {checkpoints} checkpoints,"
        " {signatures} signatures checked."
    ),
    "governance.verify_failed": "The audit chain is broken at entry {seq}: {message}",
    "governance.checkpoint": (
        "Latest signed checkpoint: entries {seq_from} to {seq_to}, Merkle root"
        " {root}, key {fingerprint}, signed {at}"
    ),
    "governance.checkpoint_none": "No signed checkpoint yet.",
    "governance.actor": "Actor",
    "governance.action": "Action",
    "governance.since": "From",
    "governance.until": "To",
    "governance.seq": "Seq",
    "governance.occurred_at": "Time",
    "governance.records": "Records",
    "governance.result": "Result",
    "governance.detail": "Detail",
    "governance.audit_empty": "No audit entries match.",
    "governance.paging": "Pages",
}
