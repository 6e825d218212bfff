"""Pieces both sandboxes share: clock, limits, fault injection, call counting, serving, admin."""
