"""Builders of Dataverse rows and run confs for the pipeline tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

ACCOUNT = "a0000000-0000-4000-8000-000000000001"


def guid(n: int) -> str:
    return f"c0000000-0000-4000-8000-{n:012d}"


def contact(contact_id: str, email: str | None, **columns: Any) -> dict[str, Any]:
    return {
        "contactid": contact_id,
        "emailaddress1": email,
        "firstname": "Ada",
        "lastname": f"Lovelace {contact_id[-4:]}",
        **columns,
    }


def events(*ids: str, message: str = "Update", entity: str = "contact") -> dict[str, Any]:
    return {"events": [{"message": message, "entity": entity, "id": i} for i in ids]}


def account(account_id: str = ACCOUNT, **columns: Any) -> dict[str, Any]:
    return {
        "accountid": account_id,
        "name": "Contoso Ltd",
        "address1_line1": "1 Microsoft Way",
        "address1_city": "Redmond",
        "address1_country": "USA",
        "telephone1": "+1 425 555 0100",
        **columns,
    }


def calls_during(sandboxes, action) -> tuple[Any, dict[str, Counter]]:
    """``action()``'s result and the API calls the sandboxes counted meanwhile, per service."""
    before = sandboxes.calls()
    result = action()
    after = sandboxes.calls()
    return result, {
        service: Counter(after[service]) - Counter(before[service]) for service in after
    }
