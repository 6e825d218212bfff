"""Shared fixtures: the sandbox (``dataverse``, ``marketo``) from ``sandbox.testing`` and a live
Airflow (``airflow_live``) from ``devenv.pytest_plugin``."""

pytest_plugins = ["sandbox.testing", "devenv.pytest_plugin"]
