"""Rules own the low-code interventions: the rule language, the streaming
evaluator with its durable state and timers, actions, backtests, stage gates
and A/B experiments.
"""
