"""Foundations every context uses: settings, database, clock, errors, logging."""
