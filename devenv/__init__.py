"""Local development environment: a real Airflow 3 for end-to-end tests and the demo.

``devenv.airflow.LocalAirflow`` runs it; ``devenv.pytest_plugin`` offers it as a pytest fixture.
"""
