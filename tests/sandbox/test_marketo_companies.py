"""Companies and the lead↔company link, from Adobe's Companies page and the company_mode setting."""

from __future__ import annotations

import pytest

from tests.sandbox.marketo_rest import MarketoRest, error_code, reasons

COMPANIES = "/rest/v1/companies.json"
ACME = {"externalCompanyId": "acct-1", "company": "Acme", "billingCity": "Oslo"}


@pytest.fixture
def rest(marketo):
    return MarketoRest(marketo.url)


def _sync_companies(rest, input_, **options):
    return rest.call("POST", COMPANIES, json={"input": input_, **options}).json()


def test_sync_companies_dedupes_by_external_id_with_seq(marketo, rest):
    first = _sync_companies(rest, [ACME, {"externalCompanyId": "acct-2", "company": "Beta"}])
    again = _sync_companies(rest, [{"externalCompanyId": "acct-1", "company": "Acme AS"}])

    ids = [r["id"] for r in first["result"]]
    assert [(r["seq"], r["status"]) for r in first["result"]] == [(0, "created"), (1, "created")]
    assert again["result"] == [{"seq": 0, "status": "updated", "id": ids[0]}]
    assert [c["company"] for c in marketo.admin.companies()] == ["Acme AS", "Beta"]


def test_repeated_key_in_one_call_is_1036_and_actions_are_kept(rest):
    answer = _sync_companies(
        rest, [ACME, {"externalCompanyId": "acct-1", "company": "Again"}, {"company": "no key"}]
    )
    update_only = _sync_companies(rest, [{"externalCompanyId": "nope"}], action="updateOnly")
    create_only = _sync_companies(rest, [ACME], action="createOnly")

    assert reasons(answer) == [None, "1036", "1003"]
    assert [r["seq"] for r in answer["result"]] == [0, 1, 2]
    assert reasons(update_only) == ["1013"]
    assert reasons(create_only) == ["1005"]


def test_get_companies_by_filter_and_describe(marketo, rest):
    [company_id] = marketo.admin.seed_companies([ACME])

    by_external_id = rest.get(COMPANIES, filterType="externalCompanyId", filterValues="acct-1")
    with_fields = rest.get(
        COMPANIES, filterType="id", filterValues=str(company_id), fields="company,billingCity"
    )
    refused = rest.get(COMPANIES, filterType="website", filterValues="x")
    [describe] = rest.get("/rest/v1/companies/describe.json")["result"]

    [company] = by_external_id["result"]
    assert set(company) == {"seq", "id", "externalCompanyId", "createdAt", "updatedAt"}
    assert with_fields["result"] == [
        {"seq": 0, "id": company_id, "company": "Acme", "billingCity": "Oslo"}
    ]
    assert error_code(refused) == "1035"
    assert describe["dedupeFields"] == ["externalCompanyId"]
    assert {"company", "billingStreet", "mktoCompanyNotes"} <= {
        f["name"] for f in describe["fields"]
    }


def test_linked_lead_reads_company_fields_from_the_company_record(marketo, rest):
    marketo.admin.seed_companies([ACME])
    [linked] = [
        r["id"] for r in rest.sync([{"email": "a@x.com", "externalCompanyId": "acct-1"}])["result"]
    ]

    _sync_companies(rest, [{"externalCompanyId": "acct-1", "billingCity": "Bergen"}])
    lead = rest.lookup("email", ["a@x.com"], fields="company,billingCity")["result"][0]

    assert lead == {"id": linked, "company": "Acme", "billingCity": "Bergen"}


def test_company_fields_on_a_linked_lead_are_refused_with_1021(marketo, rest):
    marketo.admin.seed_companies([ACME])
    marketo.admin.seed_leads([{"email": "a@x.com", "externalCompanyId": "acct-1"}])

    answer = rest.sync(
        [
            {"email": "a@x.com", "company": "Other"},
            {"email": "new@x.com", "externalCompanyId": "acct-1", "company": "Other"},
            {"email": "a@x.com", "firstName": "Fine"},
        ]
    )

    assert reasons(answer) == ["1021", "1021", None]
    assert answer["result"][0]["reasons"][0]["message"] == "Company update not allowed"
    assert marketo.admin.companies()[0]["company"] == "Acme"


def test_lead_without_company_record_keeps_company_fields_itself(marketo, rest):
    answer = rest.sync([{"email": "a@x.com", "company": "Solo Ltd", "billingCity": "Rome"}])

    lead = marketo.admin.lead(answer["result"][0]["id"])
    assert (lead["company"], lead["billingCity"]) == ("Solo Ltd", "Rome")
    assert marketo.admin.companies() == []


def test_write_through_mode_changes_every_lead_of_the_company(marketo, rest):
    marketo.admin.settings(linked_company_write="write_through")
    marketo.admin.seed_companies([ACME])
    ids = marketo.admin.seed_leads(
        [{"email": f"{n}@x.com", "externalCompanyId": "acct-1"} for n in ("a", "b")]
    )

    answer = rest.sync([{"email": "a@x.com", "company": "Acme Group"}])

    assert reasons(answer) == [None]
    assert [marketo.admin.lead(i)["company"] for i in ids] == ["Acme Group", "Acme Group"]


def test_crm_sync_makes_company_writes_1018_but_reads_work(marketo, rest):
    marketo.admin.seed_companies([ACME])
    marketo.admin.settings(crm_sync_enabled=True)

    write = _sync_companies(rest, [{"externalCompanyId": "acct-2"}])
    read = rest.get(COMPANIES, filterType="externalCompanyId", filterValues="acct-1")

    assert write["errors"] == [{"code": "1018", "message": "CRM Enabled"}]
    assert len(read["result"]) == 1
