"""Airflow hooks for the two services: every HTTP call of the product goes through them."""
