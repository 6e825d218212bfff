"""Local stand-ins for Entra ID + the Dataverse Web API and for Adobe Marketo Engage REST.

Both services follow ``shared/docs/dynamics365-api.md`` and ``marketo-api.md``: their token
lifetimes, limits, error shapes, paging and webhooks. They are the default target of the demo and
of every test; a user points the Airflow Connections at real tenants instead.
"""
