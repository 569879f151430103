"""Tests of the rules context."""
