"""Proposed service/ changes, measured by the bench (the lead applies them to service/)."""
