"""The Dataverse webhook relay: check the key, spool durably, forward to Airflow in batches.

Run it with ``python -m relay``; configuration is in :mod:`relay.settings`.
"""
