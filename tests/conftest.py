"""Shared fixtures: the sandbox (``dataverse``, ``marketo``) comes from ``sandbox.testing``."""

pytest_plugins = ["sandbox.testing"]
