"""The demo company (演示公司): a seeded, realistic Chinese sales organisation.

It owns nothing but generated data: an org chart of about 300 people in five
sales regions and eleven departments, 5,000 customer companies with contacts,
20,000 opportunities over two years with stage history, line items, quotas,
logged activities and a public pool, and one login per role. ``waggle demo``
builds it; the same seed and "today" always give the same company.
"""

from waggle.demo.builder import (
    DEFAULT_SEED,
    DemoResult,
    build_demo_company,
    holds_employees,
)
from waggle.demo.generator import DemoCompany, generate_company
from waggle.demo.orgchart import Login

__all__ = [
    "DEFAULT_SEED",
    "DemoCompany",
    "DemoResult",
    "Login",
    "build_demo_company",
    "generate_company",
    "holds_employees",
]
