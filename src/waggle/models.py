"""Imports every context's tables so that metadata and migrations see them all."""


def load_all_models() -> None:
    """Import each context's ``models`` module (registers its tables on ``Base``)."""
    import waggle.channels.models
    import waggle.crm.models
    import waggle.governance.lineage_models
    import waggle.governance.models
    import waggle.identity.models
    import waggle.insights.forecast_models
    import waggle.insights.models
    import waggle.rules.experiment_models
    import waggle.rules.models
    import waggle.signals.models  # noqa: F401
