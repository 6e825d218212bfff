"""The "Contact sync" pages in Airflow's UI (:func:`contact_sync.ui.app.create_app`), served from
the sync ledger and mounted by the plugin in ``plugins/contact_sync_plugin.py``."""
