"""Validates request parameters against Meta's OpenAPI constraints (``phone_number_schemas.json``).

Where Graph's reference page for the ``phone_numbers`` edge and the OpenAPI description disagree,
the sandbox follows the reference page: ``phone_number`` on create is the national number without
country code, and ``verified_name`` may be left out when migrating or preverified.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from airflow_provider_whatsapp.sandbox.state import SchemaViolation

SCHEMA_FILE = Path(__file__).with_name("phone_number_schemas.json")

CREATE = "createWhatsAppBusinessAccountPhoneNumber"
LIST = "getWhatsAppBusinessAccountPhoneNumbers"
GET = "getPhoneNumberById"
REQUEST_CODE = "requestVerificationCode"
VERIFY_CODE = "verifyPhoneNumberCode"
REGISTER = "registerWhatsAppBusinessPhoneNumber"
DEREGISTER = "deregisterPhoneNumber"
UPDATE = "updatePhoneNumberStatus"

# Parameters every call may carry; they are not part of any operation's schema.
COMMON_PARAMS = frozenset({"access_token", "appsecret_proof", "fields", "format", "method", "pretty"})


class ParamRules:
    """The constraints of one operation.

    :param operation: OpenAPI operation id.
    :param properties: parameter name -> JSON-schema constraints.
    :param required: parameters that must be present.
    """

    def __init__(self, operation: str, properties: dict[str, dict[str, Any]], required: list[str]) -> None:
        self.operation = operation
        self.properties = properties
        self.required = required


@cache
def _schema_document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return data


@cache
def rules_for(operation: str) -> ParamRules:
    """The merged query and body constraints of ``operation``, with our documented overrides."""
    spec = _schema_document()["operations"][operation]
    properties: dict[str, dict[str, Any]] = copy.deepcopy(spec.get("query_parameters", {}))
    body = spec.get("request_body", {}).get("application/json", {})
    properties.update(copy.deepcopy(body.get("properties", {})))
    required = list(spec.get("required_query", [])) + list(body.get("required", []))
    if operation == CREATE:
        # The reference page: the national number, digits only; E.164 is checked with cc later.
        properties["phone_number"] = {"type": "string", "pattern": "^[0-9]{1,14}$"}
        required = ["cc", "phone_number"]
    if operation == UPDATE:
        properties["pin"] = {"type": "string", "pattern": "^[0-9]{6}$"}
    return ParamRules(operation, properties, required)


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def coerced(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Form and query values arrive as strings: turn them into the declared booleans/integers.

    Values that do not convert are left alone for :func:`violations` to report.
    """
    rules = rules_for(operation)
    result = dict(params)
    for name, value in params.items():
        declared = rules.properties.get(name, {}).get("type")
        if not isinstance(value, str):
            continue
        if declared == "boolean" and value.lower() in ("true", "false"):
            result[name] = value.lower() == "true"
        elif declared == "integer" and re.fullmatch(r"-?[0-9]+", value):
            result[name] = int(value)
    return result


def _broken_rule(name: str, value: Any, rule: dict[str, Any]) -> tuple[str, str] | None:
    """Return ``(rule, message)`` for the first constraint ``value`` breaks."""
    declared = rule.get("type")
    if declared == "string" and not isinstance(value, str):
        return "type string", f"(#100) Param {name} must be a string"
    if declared == "boolean" and not isinstance(value, bool):
        return "type boolean", f"(#100) Param {name} must be a boolean"
    if declared == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        return "type integer", f"(#100) Param {name} must be an integer"
    if declared == "object" and not isinstance(value, dict):
        return "type object", f"(#100) Param {name} must be an object"
    if "enum" in rule and value not in rule["enum"]:
        return f"enum {rule['enum']}", f"(#100) Param {name} must be one of {{{', '.join(map(str, rule['enum']))}}}"
    if isinstance(value, str):
        if "minLength" in rule and len(value) < rule["minLength"]:
            return (
                f"minLength {rule['minLength']}",
                f"(#100) Param {name} must be at least {rule['minLength']} characters long",
            )
        if "maxLength" in rule and len(value) > rule["maxLength"]:
            return (
                f"maxLength {rule['maxLength']}",
                f"(#100) Param {name} must be at most {rule['maxLength']} characters long",
            )
        if "pattern" in rule and not re.search(rule["pattern"], value):
            return f"pattern {rule['pattern']}", f"(#100) Param {name} does not match pattern {rule['pattern']}"
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in rule and value < rule["minimum"]:
            return f"minimum {rule['minimum']}", f"(#100) Param {name} must be at least {rule['minimum']}"
        if "maximum" in rule and value > rule["maximum"]:
            return f"maximum {rule['maximum']}", f"(#100) Param {name} must be at most {rule['maximum']}"
    return None


def violations(operation: str, params: dict[str, Any]) -> list[SchemaViolation]:
    """Every violation of ``operation``'s constraints by ``params`` (already coerced), in order.

    Unknown parameters are ignored, as Graph ignores them.

    :param operation: OpenAPI operation id.
    :param params: the merged query and body parameters.
    """
    rules = rules_for(operation)
    violations: list[SchemaViolation] = []
    required = list(rules.required)
    if operation == CREATE and not (_is_true(params.get("migrate_phone_number")) or params.get("preverified_id")):
        required.append("verified_name")
    for name in required:
        if params.get(name) in (None, ""):
            violations.append(
                SchemaViolation(operation, name, "required", f"(#100) The parameter {name} is required", None)
            )
    for name, value in params.items():
        if name in COMMON_PARAMS or name not in rules.properties or value is None:
            continue
        if name in required and value == "":
            continue
        broken = _broken_rule(name, value, rules.properties[name])
        if broken is not None:
            violations.append(SchemaViolation(operation, name, broken[0], broken[1], value))
    if operation == CREATE and not violations:
        cc, number = str(params["cc"]), str(params["phone_number"])
        if cc.startswith("0"):
            violations.append(
                SchemaViolation(operation, "cc", "no leading zero", "(#100) Param cc must not start with 0", cc)
            )
        elif len(cc) + len(number) > 15:
            violations.append(
                SchemaViolation(
                    operation,
                    "phone_number",
                    "E.164 at most 15 digits",
                    "(#100) Param phone_number with cc must form a valid E.164 number of at most 15 digits",
                    number,
                )
            )
    return violations
