"""Dynamics 365 contacts → Marketo leads: hooks and the sync logic, plain Python under plugins/."""
