"""Local stand-ins for Entra ID + the Dataverse Web API and for Adobe Marketo Engage REST.

Both follow the public documentation of the real services (Microsoft Learn's Dataverse Web API
and webhook pages, Adobe's Marketo REST pages, cited where each behaviour is built): their token
lifetimes, limits, error shapes, paging and webhooks. They are the default target of the demo and
of every test; a user points the Airflow Connections at real tenants instead.
"""
