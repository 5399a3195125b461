"""CRM metadata: field descriptions (``crm.<entity>.fields``, ``crm.item.fields``), custom fields,
directories (``crm.status.list``) and pipelines (``crm.category.list``).

The standard fields are the response examples of the official docs
(``api-reference/crm/<entity>s/crm-<entity>-fields.md``), kept as data:
name -> (type, flags, statusType, title); flags: R read-only, I immutable, M multiple.
"""

from __future__ import annotations

import copy
from typing import Any

STANDARD: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "contact": {
        "ID": ("integer", "R", "", "ID"),
        "HONORIFIC": ("crm_status", "", "HONORIFIC", "Salutation"),
        "NAME": ("string", "", "", "First Name"),
        "SECOND_NAME": ("string", "", "", "Middle Name"),
        "LAST_NAME": ("string", "", "", "Last Name"),
        "PHOTO": ("file", "", "", "Photo"),
        "BIRTHDATE": ("date", "", "", "Birthdate"),
        "TYPE_ID": ("crm_status", "", "CONTACT_TYPE", "Contact Type"),
        "SOURCE_ID": ("crm_status", "", "SOURCE", "Source"),
        "SOURCE_DESCRIPTION": ("string", "", "", "Additional Source Information"),
        "POST": ("string", "", "", "Position"),
        "ADDRESS": ("string", "", "", "Address"),
        "ADDRESS_2": ("string", "", "", "Address (Line 2)"),
        "ADDRESS_CITY": ("string", "", "", "City"),
        "ADDRESS_POSTAL_CODE": ("string", "", "", "Postal Code"),
        "ADDRESS_REGION": ("string", "", "", "Region"),
        "ADDRESS_PROVINCE": ("string", "", "", "Province"),
        "ADDRESS_COUNTRY": ("string", "", "", "Country"),
        "ADDRESS_COUNTRY_CODE": ("string", "", "", "Country Code"),
        "ADDRESS_LOC_ADDR_ID": ("integer", "", "", "Location Address ID"),
        "COMMENTS": ("string", "", "", "Comment"),
        "OPENED": ("char", "", "", "Available to All"),
        "EXPORT": ("char", "", "", "Participates in Contact Export"),
        "HAS_PHONE": ("char", "R", "", "Phone Set"),
        "HAS_EMAIL": ("char", "R", "", "E-mail Set"),
        "HAS_IMOL": ("char", "R", "", "Open Line Set"),
        "ASSIGNED_BY_ID": ("user", "", "", "Responsible Person"),
        "CREATED_BY_ID": ("user", "R", "", "Created By"),
        "MODIFY_BY_ID": ("user", "R", "", "Modified By"),
        "DATE_CREATE": ("datetime", "R", "", "Creation Date"),
        "DATE_MODIFY": ("datetime", "R", "", "Modification Date"),
        "COMPANY_ID": ("crm_company", "", "", "Company"),
        "COMPANY_IDS": ("crm_company", "M", "", "COMPANY_IDS"),
        "LEAD_ID": ("crm_lead", "R", "", "Lead"),
        "ORIGINATOR_ID": ("string", "", "", "External Source"),
        "ORIGIN_ID": ("string", "", "", "Identifier in External Source"),
        "ORIGIN_VERSION": ("string", "", "", "Original Version"),
        "UTM_SOURCE": ("string", "", "", "Advertising System"),
        "UTM_MEDIUM": ("string", "", "", "Traffic Type"),
        "UTM_CAMPAIGN": ("string", "", "", "Campaign Identifier"),
        "UTM_CONTENT": ("string", "", "", "Campaign Content"),
        "UTM_TERM": ("string", "", "", "Campaign Search Condition"),
        "LAST_ACTIVITY_TIME": ("datetime", "R", "", "Last Activity"),
        "LAST_ACTIVITY_BY": ("user", "R", "", "Last Activity By"),
        "PHONE": ("crm_multifield", "M", "", "Phone"),
        "EMAIL": ("crm_multifield", "M", "", "E-mail"),
        "WEB": ("crm_multifield", "M", "", "Website"),
        "IM": ("crm_multifield", "M", "", "Messenger"),
        "LINK": ("crm_multifield", "M", "", "LINK"),
    },
    "company": {
        "ID": ("integer", "R", "", "ID"),
        "TITLE": ("string", "", "", "Company Name"),
        "COMPANY_TYPE": ("crm_status", "", "COMPANY_TYPE", "Company Type"),
        "LOGO": ("file", "", "", "Logo"),
        "ADDRESS": ("string", "", "", "Physical Address"),
        "ADDRESS_2": ("string", "", "", "Address (line 2)"),
        "ADDRESS_CITY": ("string", "", "", "City"),
        "ADDRESS_POSTAL_CODE": ("string", "", "", "Postal Code"),
        "ADDRESS_REGION": ("string", "", "", "Region"),
        "ADDRESS_PROVINCE": ("string", "", "", "Province"),
        "ADDRESS_COUNTRY": ("string", "", "", "Country"),
        "ADDRESS_COUNTRY_CODE": ("string", "", "", "Country Code"),
        "ADDRESS_LOC_ADDR_ID": ("integer", "", "", "Location Address ID"),
        "ADDRESS_LEGAL": ("string", "", "", "Legal Address"),
        "REG_ADDRESS": ("string", "", "", "Legal Address"),
        "REG_ADDRESS_2": ("string", "", "", "Legal Address (line 2)"),
        "REG_ADDRESS_CITY": ("string", "", "", "Legal Address City"),
        "REG_ADDRESS_POSTAL_CODE": ("string", "", "", "Legal Address Postal Code"),
        "REG_ADDRESS_REGION": ("string", "", "", "Legal Address Region"),
        "REG_ADDRESS_PROVINCE": ("string", "", "", "Legal Address Province"),
        "REG_ADDRESS_COUNTRY": ("string", "", "", "Legal Address Country"),
        "REG_ADDRESS_COUNTRY_CODE": ("string", "", "", "Legal Address Country Code"),
        "REG_ADDRESS_LOC_ADDR_ID": ("integer", "", "", "Legal Address Location ID"),
        "BANKING_DETAILS": ("string", "", "", "Banking Details"),
        "INDUSTRY": ("crm_status", "", "INDUSTRY", "Industry"),
        "EMPLOYEES": ("crm_status", "", "EMPLOYEES", "Number of Employees"),
        "CURRENCY_ID": ("crm_currency", "", "", "Currency"),
        "REVENUE": ("double", "", "", "Annual Revenue"),
        "OPENED": ("char", "", "", "Available to Everyone"),
        "COMMENTS": ("string", "", "", "Comment"),
        "HAS_PHONE": ("char", "R", "", "Phone Set"),
        "HAS_EMAIL": ("char", "R", "", "E-mail Set"),
        "HAS_IMOL": ("char", "R", "", "Open Line Set"),
        "IS_MY_COMPANY": ("char", "", "", "My Company"),
        "ASSIGNED_BY_ID": ("user", "", "", "Responsible Person"),
        "CREATED_BY_ID": ("user", "R", "", "Created By"),
        "MODIFY_BY_ID": ("user", "R", "", "Modified By"),
        "DATE_CREATE": ("datetime", "R", "", "Creation Date"),
        "DATE_MODIFY": ("datetime", "R", "", "Modification Date"),
        "CONTACT_ID": ("crm_contact", "M", "", "Contact"),
        "LEAD_ID": ("crm_lead", "R", "", "Lead"),
        "ORIGINATOR_ID": ("string", "", "", "External Source"),
        "ORIGIN_ID": ("string", "", "", "Identifier in External Source"),
        "ORIGIN_VERSION": ("string", "", "", "Original Version"),
        "UTM_SOURCE": ("string", "", "", "Advertising System"),
        "UTM_MEDIUM": ("string", "", "", "Traffic Type"),
        "UTM_CAMPAIGN": ("string", "", "", "Campaign Identifier"),
        "UTM_CONTENT": ("string", "", "", "Campaign Content"),
        "UTM_TERM": ("string", "", "", "Campaign Search Term"),
        "LAST_ACTIVITY_TIME": ("datetime", "", "", "Last Activity Time"),
        "LAST_ACTIVITY_BY": ("user", "", "", "Last Activity Author"),
        "LAST_COMMUNICATION_TIME": ("string", "R", "", "Last Communication Date"),
        "PHONE": ("crm_multifield", "M", "", "Phone"),
        "EMAIL": ("crm_multifield", "M", "", "E-mail"),
        "WEB": ("crm_multifield", "M", "", "Website"),
        "IM": ("crm_multifield", "M", "", "Messenger"),
        "LINK": ("crm_multifield", "M", "", "LINK"),
    },
    "deal": {
        "ID": ("integer", "R", "", "ID"),
        "TITLE": ("string", "", "", "Title"),
        "TYPE_ID": ("crm_status", "", "DEAL_TYPE", "Type"),
        "CATEGORY_ID": ("crm_category", "I", "", "Sales Funnel"),
        "STAGE_ID": ("crm_status", "", "DEAL_STAGE", "Deal Stage"),
        "STAGE_SEMANTIC_ID": ("string", "R", "", "Stage Group"),
        "IS_NEW": ("char", "R", "", "New Deal"),
        "IS_RECURRING": ("char", "", "", "Recurring Deal"),
        "IS_RETURN_CUSTOMER": ("char", "", "", "Repeat Deal"),
        "IS_REPEATED_APPROACH": ("char", "", "", "Repeated Approach"),
        "PROBABILITY": ("integer", "", "", "Probability"),
        "CURRENCY_ID": ("crm_currency", "", "", "Currency"),
        "OPPORTUNITY": ("double", "", "", "Amount"),
        "IS_MANUAL_OPPORTUNITY": ("char", "", "", "IS_MANUAL_OPPORTUNITY"),
        "TAX_VALUE": ("double", "", "", "Tax Rate"),
        "COMPANY_ID": ("crm_company", "", "", "Company"),
        "CONTACT_ID": ("crm_contact", "", "", "Contact"),
        "CONTACT_IDS": ("crm_contact", "M", "", "Contacts"),
        "QUOTE_ID": ("crm_quote", "R", "", "Estimate"),
        "BEGINDATE": ("date", "", "", "Start Date"),
        "CLOSEDATE": ("date", "", "", "Close Date"),
        "OPENED": ("char", "", "", "Available to All"),
        "CLOSED": ("char", "", "", "Closed"),
        "COMMENTS": ("string", "", "", "Comment"),
        "ASSIGNED_BY_ID": ("user", "", "", "Responsible"),
        "CREATED_BY_ID": ("user", "R", "", "Created By"),
        "MODIFY_BY_ID": ("user", "R", "", "Modified By"),
        "MOVED_BY_ID": ("user", "R", "", "MOVED_BY_ID"),
        "DATE_CREATE": ("datetime", "R", "", "Creation Date"),
        "DATE_MODIFY": ("datetime", "R", "", "Modification Date"),
        "MOVED_TIME": ("datetime", "R", "", "MOVED_TIME"),
        "SOURCE_ID": ("crm_status", "", "SOURCE", "Source"),
        "SOURCE_DESCRIPTION": ("string", "", "", "Additional Info about Source"),
        "LEAD_ID": ("crm_lead", "R", "", "Lead"),
        "ADDITIONAL_INFO": ("string", "", "", "Additional Information"),
        "LOCATION_ID": ("location", "", "", "Location"),
        "ORIGINATOR_ID": ("string", "", "", "External Source"),
        "ORIGIN_ID": ("string", "", "", "Identifier in External Source"),
        "UTM_SOURCE": ("string", "", "", "Advertising System"),
        "UTM_MEDIUM": ("string", "", "", "Traffic Type"),
        "UTM_CAMPAIGN": ("string", "", "", "Campaign Identifier"),
        "UTM_CONTENT": ("string", "", "", "Campaign Content"),
        "UTM_TERM": ("string", "", "", "Campaign Search Condition"),
        "LAST_ACTIVITY_TIME": ("datetime", "R", "", "LAST_ACTIVITY_TIME"),
        "LAST_ACTIVITY_BY": ("user", "R", "", "LAST_ACTIVITY_BY"),
    },
    "lead": {
        "ID": ("integer", "R", "", "ID"),
        "TITLE": ("string", "", "", "Lead Title"),
        "HONORIFIC": ("crm_status", "", "HONORIFIC", "Salutation"),
        "NAME": ("string", "", "", "First Name"),
        "SECOND_NAME": ("string", "", "", "Middle Name"),
        "LAST_NAME": ("string", "", "", "Last Name"),
        "BIRTHDATE": ("date", "", "", "Birthdate"),
        "COMPANY_TITLE": ("string", "", "", "Company Name"),
        "SOURCE_ID": ("crm_status", "", "SOURCE", "Source"),
        "SOURCE_DESCRIPTION": ("string", "", "", "Source Description"),
        "STATUS_ID": ("crm_status", "", "STATUS", "Stage"),
        "STATUS_DESCRIPTION": ("string", "", "", "Stage Description"),
        "STATUS_SEMANTIC_ID": ("string", "R", "", "Status Semantic"),
        "POST": ("string", "", "", "Position"),
        "ADDRESS": ("string", "", "", "Address"),
        "ADDRESS_2": ("string", "", "", "Address (Line 2)"),
        "ADDRESS_CITY": ("string", "", "", "City"),
        "ADDRESS_POSTAL_CODE": ("string", "", "", "Postal Code"),
        "ADDRESS_REGION": ("string", "", "", "Region"),
        "ADDRESS_PROVINCE": ("string", "", "", "Province"),
        "ADDRESS_COUNTRY": ("string", "", "", "Country"),
        "ADDRESS_COUNTRY_CODE": ("string", "", "", "Country Code"),
        "ADDRESS_LOC_ADDR_ID": ("integer", "", "", "Location Address ID"),
        "CURRENCY_ID": ("crm_currency", "", "", "Currency"),
        "OPPORTUNITY": ("double", "", "", "Amount"),
        "IS_MANUAL_OPPORTUNITY": ("char", "", "", "IS_MANUAL_OPPORTUNITY"),
        "OPENED": ("char", "", "", "Available to All"),
        "COMMENTS": ("string", "", "", "Comments"),
        "HAS_PHONE": ("char", "R", "", "Phone Provided"),
        "HAS_EMAIL": ("char", "R", "", "Email Provided"),
        "HAS_IMOL": ("char", "R", "", "Open Line Assigned"),
        "ASSIGNED_BY_ID": ("user", "", "", "Responsible User"),
        "CREATED_BY_ID": ("user", "R", "", "Created By"),
        "MODIFY_BY_ID": ("user", "R", "", "Modified By"),
        "MOVED_BY_ID": ("user", "R", "", "MOVED_BY_ID"),
        "DATE_CREATE": ("datetime", "R", "", "Creation Date"),
        "DATE_MODIFY": ("datetime", "R", "", "Modification Date"),
        "MOVED_TIME": ("datetime", "R", "", "MOVED_TIME"),
        "COMPANY_ID": ("crm_company", "", "", "Company"),
        "CONTACT_ID": ("crm_contact", "", "", "Contact"),
        "CONTACT_IDS": ("crm_contact", "M", "", "CONTACT_IDS"),
        "IS_RETURN_CUSTOMER": ("char", "R", "", "Returning Lead"),
        "DATE_CLOSED": ("datetime", "R", "", "Closing Date"),
        "ORIGINATOR_ID": ("string", "", "", "External Source"),
        "ORIGIN_ID": ("string", "", "", "Identifier in External Source"),
        "UTM_SOURCE": ("string", "", "", "Advertising System"),
        "UTM_MEDIUM": ("string", "", "", "Traffic Type"),
        "UTM_CAMPAIGN": ("string", "", "", "Campaign Identifier"),
        "UTM_CONTENT": ("string", "", "", "Campaign Content"),
        "UTM_TERM": ("string", "", "", "Campaign Search Term"),
        "LAST_ACTIVITY_TIME": ("datetime", "R", "", "LAST_ACTIVITY_TIME"),
        "LAST_ACTIVITY_BY": ("user", "R", "", "LAST_ACTIVITY_BY"),
        "PHONE": ("crm_multifield", "M", "", "Phone"),
        "EMAIL": ("crm_multifield", "M", "", "E-mail"),
        "WEB": ("crm_multifield", "M", "", "Website"),
        "IM": ("crm_multifield", "M", "", "Messenger"),
        "LINK": ("crm_multifield", "M", "", "LINK"),
    },
}

# Custom fields every emulated portal has (the seed fills them): opt-outs, a segment list on
# contacts, a payment due date on deals. ``items`` ids are what enumeration values store.
_NO_EMAIL = {"type": "boolean", "label": "Do not e-mail"}
_NO_SMS = {"type": "boolean", "label": "Do not send SMS"}
USER_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "contact": {
        "UF_CRM_NO_EMAIL": _NO_EMAIL,
        "UF_CRM_NO_SMS": _NO_SMS,
        "UF_CRM_SEGMENT": {
            "type": "enumeration",
            "label": "Segment",
            "items": [
                {"ID": "101", "VALUE": "VIP"},
                {"ID": "102", "VALUE": "Regular"},
                {"ID": "103", "VALUE": "New"},
            ],
        },
    },
    "company": {"UF_CRM_NO_EMAIL": _NO_EMAIL, "UF_CRM_NO_SMS": _NO_SMS},
    "lead": {"UF_CRM_NO_EMAIL": _NO_EMAIL, "UF_CRM_NO_SMS": _NO_SMS},
    "deal": {"UF_CRM_PAYMENT_DUE": {"type": "date", "label": "Payment due"}},
}


def default_user_fields() -> dict[str, dict[str, dict[str, Any]]]:
    return copy.deepcopy(USER_FIELDS)


def describe(entity: str, user_fields: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``crm.<entity>.fields`` answer: standard fields, then custom ones (``isDynamic``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (kind, flags, status_type, title) in STANDARD[entity].items():
        item: dict[str, Any] = {
            "type": kind,
            "isRequired": False,
            "isReadOnly": "R" in flags,
            "isImmutable": "I" in flags,
            "isMultiple": "M" in flags,
            "isDynamic": False,
        }
        if status_type:
            item["statusType"] = status_type
        item["title"] = title
        out[name] = item
    for name, spec in user_fields.items():
        label = spec.get("label", name)
        item = {
            "type": spec["type"],
            "isRequired": bool(spec.get("required")),
            "isReadOnly": False,
            "isImmutable": False,
            "isMultiple": bool(spec.get("multiple")),
            "isDynamic": True,
        }
        if spec["type"] == "enumeration":
            item["items"] = [dict(i) for i in spec.get("items", [])]
        item.update(title=name, listLabel=label, formLabel=label, filterLabel=label)
        out[name] = item
    return out


# -- directories and pipelines --------------------------------------------------------------------
_SEMANTIC = {"": ("process", None), "S": ("success", "S"), "F": ("failure", "F")}
_DEAL_STAGES = (
    ("NEW", "New", ""),
    ("PREPARATION", "Document preparation", ""),
    ("PREPAYMENT_INVOICE", "Prepayment invoice", ""),
    ("EXECUTING", "In progress", ""),
    ("FINAL_INVOICE", "Final invoice", ""),
    ("WON", "Deal successful", "S"),
    ("LOSE", "Deal failed", "F"),
    ("APOLOGY", "Failure reason analysis", "F"),
)
_DIRECTORIES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "DEAL_STAGE": _DEAL_STAGES,
    "DEAL_STAGE_1": (
        ("C1:NEW", "New", ""),
        ("C1:EXECUTING", "In progress", ""),
        ("C1:WON", "Deal successful", "S"),
        ("C1:LOSE", "Deal failed", "F"),
    ),
    "STATUS": (
        ("NEW", "Unassigned", ""),
        ("IN_PROCESS", "In progress", ""),
        ("PROCESSED", "Processed", ""),
        ("CONVERTED", "Good lead", "S"),
        ("JUNK", "Junk lead", "F"),
    ),
    "SOURCE": (
        ("CALL", "Call", ""),
        ("EMAIL", "E-mail", ""),
        ("WEB", "Website", ""),
        ("ADVERTISING", "Advertising", ""),
        ("PARTNER", "Existing client", ""),
        ("OTHER", "Other", ""),
    ),
    "CONTACT_TYPE": (
        ("CLIENT", "Clients", ""),
        ("SUPPLIER", "Suppliers", ""),
        ("PARTNER", "Partners", ""),
        ("OTHER", "Other", ""),
    ),
    "COMPANY_TYPE": (
        ("CUSTOMER", "Client", ""),
        ("SUPPLIER", "Supplier", ""),
        ("COMPETITOR", "Competitor", ""),
        ("PARTNER", "Partner", ""),
        ("OTHER", "Other", ""),
    ),
    "INDUSTRY": (
        ("IT", "Information Technology", ""),
        ("MANUFACTURING", "Manufacturing", ""),
        ("OTHER", "Other", ""),
    ),
    "DEAL_TYPE": (("SALE", "Sales", ""), ("GOODS", "Merchandise", ""), ("SERVICE", "Services", "")),
    "HONORIFIC": (("HNR_EN_1", "Mr.", ""), ("HNR_EN_2", "Mrs.", ""), ("HNR_EN_3", "Ms.", "")),
}
_STAGE_LISTS = {"DEAL_STAGE", "DEAL_STAGE_1", "STATUS"}
_SYSTEM = {"NEW", "WON", "LOSE", "CONVERTED", "JUNK", "C1:NEW", "C1:WON", "C1:LOSE"}


def statuses() -> list[dict[str, Any]]:
    """Every directory item in ``crm.status.list`` shape (ids are stable across resets)."""
    rows: list[dict[str, Any]] = []
    next_id = 101
    for entity_id, items in _DIRECTORIES.items():
        for sort, (status_id, name, semantic) in enumerate(items, start=1):
            row: dict[str, Any] = {
                "ID": str(next_id),
                "ENTITY_ID": entity_id,
                "STATUS_ID": status_id,
                "NAME": name,
                "NAME_INIT": name if status_id in _SYSTEM else "",
                "SORT": str(sort * 10),
                "SYSTEM": "Y" if status_id in _SYSTEM else "N",
                "CATEGORY_ID": "1" if entity_id == "DEAL_STAGE_1" else None,
            }
            if entity_id in _STAGE_LISTS:
                extra, code = _SEMANTIC[semantic]
                row.update(
                    COLOR="#39A8EF", SEMANTICS=code, EXTRA={"SEMANTICS": extra, "COLOR": "#39A8EF"}
                )
            rows.append(row)
            next_id += 2
    return rows


# Deal pipelines (``crm.category.list`` for entityTypeId 2); other types have only the default.
DEAL_CATEGORIES: tuple[dict[str, Any], ...] = (
    {
        "id": 1,
        "name": "Repeat sales",
        "sort": 200,
        "entityTypeId": 2,
        "isDefault": "N",
        "originId": "",
        "originatorId": "",
    },
    {"id": 0, "name": "General", "sort": 300, "entityTypeId": 2, "isDefault": "Y"},
)
# crm.category.* answers ENTITY_TYPE_NOT_SUPPORTED for types without pipelines (docs).
CATEGORY_TYPES = {2}
