"""The pipeline steps without Airflow's scheduling: real hooks against the sandboxes.

These cover what the DAG runs do not reach easily: the composition the reconciliation uses, a
create that meets a lead created since the lookup, a skipped company, and the hooks' call counter.
"""

from __future__ import annotations

import yaml

from contact_sync import pipeline
from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import MarketoHook
from contact_sync.mapping import load_mappings
from contact_sync.report import summarise_api_calls
from tests.pipeline.records import ACCOUNT, account, contact, guid


def test_sync_contacts_gives_one_outcome_per_contact_and_uses_expanded_accounts(sandboxes):
    mappings = load_mappings()
    with_account, no_email = guid(1), guid(2)
    sandboxes.dataverse.admin.seed(
        accounts=[account()],
        contacts=[
            contact(with_account, "page@example.com", _parentcustomerid_value=ACCOUNT),
            contact(no_email, None),
        ],
    )
    dynamics, marketo = DynamicsHook(), MarketoHook()
    page = list(
        dynamics.get_contacts(
            [with_account, no_email],
            select=mappings.contact_select,
            account_select=mappings.account_select,
        ).values()
    )

    outcomes = pipeline.sync_contacts(dynamics, marketo, page, mappings)

    assert [(o.contact_id, o.status) for o in outcomes] == [
        (with_account, "created"),
        (no_email, "rejected"),
    ]
    (lead,) = sandboxes.marketo.admin.leads()
    assert lead["company"] == "Contoso Ltd"
    assert "GET /api/data/v9.2/accounts" not in dynamics.api_calls  # came with the contacts


def test_a_create_that_meets_a_lead_made_since_the_lookup_updates_it(sandboxes):
    mappings = load_mappings()
    contact_id = guid(3)
    sandboxes.dataverse.admin.seed(contacts=[contact(contact_id, "race@example.com")])
    dynamics, marketo = DynamicsHook(), MarketoHook()
    contacts, _ = pipeline.fetch_contacts(dynamics, [contact_id], mappings)
    drafts, _ = pipeline.map_to_leads([contact_id], contacts, {}, mappings)
    found = pipeline.find_leads(marketo, drafts, mappings)  # nothing yet
    (lead_id,) = sandboxes.marketo.admin.seed_leads([{"email": "race@example.com"}])  # a form fill

    outcomes = pipeline.upsert_leads(marketo, drafts, found, mappings)

    assert [(o.status, o.lead_id) for o in outcomes] == [("updated", lead_id)]
    (lead,) = sandboxes.marketo.admin.leads()
    assert lead["dynamicsContactId"] == contact_id


def test_a_contact_whose_company_marketo_skips_is_rejected_and_its_lead_not_written(
    company_record_mode, sandboxes
):
    # "department" is a lead field the Company object lacks: Marketo skips that company (1006).
    account_map = company_record_mode / "account_to_company.yaml"
    entries = yaml.safe_load(account_map.read_text())
    entries["fields"].append({"marketo": "department", "dataverse": "description"})
    account_map.write_text(yaml.safe_dump(entries))
    mappings = load_mappings()
    with_company, without = guid(4), guid(5)
    sandboxes.dataverse.admin.seed(
        accounts=[account(description="Sales")],
        contacts=[
            contact(with_company, "co@example.com", _parentcustomerid_value=ACCOUNT),
            contact(without, "solo@example.com"),
        ],
    )
    dynamics, marketo = DynamicsHook(), MarketoHook()
    contacts, _ = pipeline.fetch_contacts(dynamics, [with_company, without], mappings)
    accounts = pipeline.fetch_accounts(dynamics, contacts, mappings)
    drafts, _ = pipeline.map_to_leads([with_company, without], contacts, accounts, mappings)

    outcomes = pipeline.upsert_leads(marketo, drafts, [], mappings)

    assert [(o.status, o.reason_code) for o in outcomes] == [
        ("rejected", "marketo company"),
        ("created", None),
    ]
    assert "1006" in (outcomes[0].reason or "")
    assert [lead["email"] for lead in sandboxes.marketo.admin.leads()] == ["solo@example.com"]


def test_the_hooks_count_every_request_sent_retries_and_tokens_included(sandboxes):
    sandboxes.marketo.admin.set_faults(
        {"rules": [{"answer": "606", "path": "/rest/v1/leads", "limit": 2}]}
    )
    marketo = MarketoHook()

    marketo.find_leads("email", ["nobody@example.com"], fields=["id", "email"])

    assert marketo.api_calls == {"POST /identity/oauth/token": 1, "GET /rest/v1/leads.json": 3}
    assert sandboxes.calls()["marketo"]["GET /rest/v1/leads.json"] == 3


def test_api_call_summaries_add_up_per_service():
    summary = summarise_api_calls(
        [
            {"dynamics": {"GET /contacts": 1, "POST /token": 1}},
            {"dynamics": {"GET /accounts": 1, "POST /token": 1}},
            {"marketo": {"GET /rest/v1/leads.json": 2}},
        ]
    )

    assert summary == {
        "dynamics": {
            "total": 4,
            "by_endpoint": {"GET /accounts": 1, "GET /contacts": 1, "POST /token": 2},
        },
        "marketo": {"total": 2, "by_endpoint": {"GET /rest/v1/leads.json": 2}},
    }
