"""Reliability suite: fault matrix, cancellation leaks, overload, drain, bad input, secrets, soak.

docs/reliability.md lists each guarantee with the test that proves it and the figures measured.
"""
