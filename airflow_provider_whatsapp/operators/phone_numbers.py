"""Operators for the WhatsApp Business phone-number lifecycle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_whatsapp import validation
from airflow_provider_whatsapp.exceptions import (
    INVALID_PARAMETER,
    OBJECT_MISSING,
    GraphPermanentError,
    InvalidInputError,
)
from airflow_provider_whatsapp.links.whatsapp_manager import WhatsAppManagerPhoneNumberLink
from airflow_provider_whatsapp.operators.base import (
    SecretTemplateFieldsMixin,
    WhatsAppBaseOperator,
    WhatsAppPhoneNumberBaseOperator,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

IF_EXISTS_CHOICES = ("adopt", "fail")
WRONG_CODE_MESSAGE = (
    "The verification code was not accepted for phone number %s: it is wrong or has expired "
    "(Graph: %s). Nothing was registered. To enter the code again, clear the task that supplies it "
    "together with its downstream tasks; if it expired, clear the task that requests the code instead."
)


class PhoneNumberExistsError(GraphPermanentError):
    """The number is already on the WABA and the operator was told not to adopt it."""


class CreatePhoneNumberOperator(WhatsAppBaseOperator):
    """
    Create a phone number on a WhatsApp Business Account and return its phone-number ID.

    Calls ``POST /{waba_id}/phone_numbers``. The new ID (a string) is the task's XCom return
    value; the WABA is pushed under the XCom key ``waba_id`` and, with ``fields``, the node read
    back in the same call under ``phone_number``. A number can never be created twice: a number
    already on the WABA is adopted (or refused, with ``if_exists="fail"``), a create that failed
    in a way that may have been applied is looked up before it is sent again, and a task retry
    looks the number up first.

    .. seealso::
        Graph API reference: ``POST /{waba_id}/phone_numbers``.

    :param cc: country dial code, 1-3 digits without ``+`` (templated).
    :param phone_number: the number without the country code; spaces, dashes, dots and
        parentheses are stripped (templated).
    :param verified_name: the display name, 2-75 characters (templated).
    :param waba_id: the WhatsApp Business Account ID; defaults to the connection's ``waba_id``
        extra (templated).
    :param migrate_phone_number: move a number registered on another WABA (templated).
    :param preverified_id: ID of a pre-verified number, which skips the code steps (templated).
    :param fields: fields of the new node to read back in the same call, e.g.
        ``"display_phone_number,code_verification_status"`` (templated).
    :param if_exists: ``"adopt"`` (default) returns the ID of a number already on the WABA;
        ``"fail"`` fails the task.
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    template_fields: Sequence[str] = (
        "whatsapp_conn_id",
        "waba_id",
        "cc",
        "phone_number",
        "verified_name",
        "migrate_phone_number",
        "preverified_id",
        "fields",
    )
    operator_extra_links = (WhatsAppManagerPhoneNumberLink(),)

    def __init__(
        self,
        *,
        cc: str,
        phone_number: str,
        verified_name: str | None = None,
        waba_id: str | None = None,
        migrate_phone_number: bool | str = False,
        preverified_id: str | None = None,
        fields: str | list[str] | None = None,
        if_exists: str = "adopt",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if if_exists not in IF_EXISTS_CHOICES:
            raise InvalidInputError("if_exists", f"must be one of {', '.join(IF_EXISTS_CHOICES)}, got {if_exists!r}")
        self.cc = cc
        self.phone_number = phone_number
        self.verified_name = verified_name
        self.waba_id = waba_id
        self.migrate_phone_number = migrate_phone_number
        self.preverified_id = preverified_id
        self.fields = fields
        self.if_exists = if_exists

    def _checked_arguments(self) -> dict[str, Any]:
        cc = validation.country_code(self.cc)
        return {
            "cc": cc,
            "phone_number": validation.national_number(self.phone_number, cc),
            "verified_name": validation.verified_name(self.verified_name),
            "migrate_phone_number": validation.boolean("migrate_phone_number", self.migrate_phone_number),
            "preverified_id": (
                validation.graph_id("preverified_id", self.preverified_id) if self.preverified_id else None
            ),
            "fields": validation.fields_param(self.fields),
        }

    def _checked_waba_id(self) -> str:
        if self.waba_id is not None:
            # Given but blank (say, a template over an unset param) is an error, not a cue to fall
            # back to the connection's WABA: that would create the number on the wrong account.
            return validation.graph_id("waba_id", self.waba_id)
        default = self.hook.default_waba_id
        if not default:
            raise InvalidInputError("waba_id", "is required: pass waba_id or set the connection's waba_id extra")
        return default

    def execute_graph(self, context: Context) -> str:
        arguments = self._checked_arguments()
        waba_id = self._checked_waba_id()
        node = None
        if context["ti"].try_number > 1:
            # An earlier try may have created the number before it died: look before posting.
            node = self._existing(waba_id, arguments)
            if node is not None:
                self.log.info("Number %s was created by an earlier try; using it", node["id"])
        if node is None:
            node = self._create(waba_id, arguments)
        phone_number_id = str(node["id"])
        if arguments["fields"]:
            context["ti"].xcom_push(key="phone_number", value=node)
        context["ti"].xcom_push(key="waba_id", value=waba_id)
        WhatsAppManagerPhoneNumberLink.persist(context, waba_id=waba_id, phone_number_id=phone_number_id)
        self.log.info("Phone number ID: %s", phone_number_id)
        return phone_number_id

    def _create(self, waba_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
        from airflow_provider_whatsapp.hooks import calls

        node, already_there = self.hook.converse(calls.create_or_find_phone_number(waba_id, **arguments))
        if already_there is None:
            return node
        if self.if_exists == "fail":
            raise PhoneNumberExistsError(
                f"+{arguments['cc']} {arguments['phone_number']} is already on WABA {waba_id} "
                f"as phone number {node['id']} (if_exists='fail')",
                code=already_there.code,
                error_subcode=already_there.error_subcode,
                fbtrace_id=already_there.fbtrace_id,
                http_status=already_there.http_status,
            ) from already_there
        self.log.info("Number is already on WABA %s as %s; adopting it (if_exists='adopt')", waba_id, node["id"])
        return node

    def _existing(self, waba_id: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        return self.hook.find_phone_number(
            waba_id, arguments["cc"], arguments["phone_number"], fields=arguments["fields"]
        )


class GetPhoneNumberOperator(WhatsAppPhoneNumberBaseOperator):
    """
    Read a phone number and return its node (a dict) to XCom: ``GET /{phone_number_id}``.

    :param phone_number_id: the phone-number ID (templated).
    :param waba_id: the number's WABA, when known, for pacing (templated).
    :param fields: the fields to read, e.g. ``"status,code_verification_status"``; Graph's
        defaults when not given (templated).
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    template_fields: Sequence[str] = ("whatsapp_conn_id", "phone_number_id", "waba_id", "fields")

    def __init__(self, *, fields: str | list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fields = fields

    def execute_graph(self, context: Context) -> dict[str, Any]:
        phone_number_id = self.checked_phone_number_id()
        fields = validation.fields_param(self.fields)
        node = self.hook.get_phone_number(phone_number_id, fields=fields)
        self.log.info("Phone number %s: %s", phone_number_id, node)
        return node


class RequestVerificationCodeOperator(WhatsAppPhoneNumberBaseOperator):
    """
    Ask Graph to send the number its verification code: ``POST /{phone_number_id}/request_code``.

    Returns ``phone_number_id`` so that the next step can take it from this task's XCom.

    :param phone_number_id: the phone-number ID (templated).
    :param waba_id: the number's WABA, when known, for pacing (templated).
    :param code_method: ``SMS`` (default) or ``VOICE`` (templated).
    :param language: language of the message, like ``en_US`` (templated).
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    template_fields: Sequence[str] = ("whatsapp_conn_id", "phone_number_id", "waba_id", "code_method", "language")

    def __init__(self, *, code_method: str = "SMS", language: str = "en_US", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.code_method = code_method
        self.language = language

    def execute_graph(self, context: Context) -> str:
        phone_number_id = self.checked_phone_number_id()
        method = validation.code_method(self.code_method)
        self.hook.request_verification_code(phone_number_id, method, validation.language(self.language))
        self.log.info("Verification code requested for %s by %s", phone_number_id, method)
        return phone_number_id


class VerifyCodeOperator(SecretTemplateFieldsMixin, WhatsAppPhoneNumberBaseOperator):
    """
    Submit the verification code the number received: ``POST /{phone_number_id}/verify_code``.

    The code is a secret: it is masked as soon as it is rendered and never logged, returned or
    put in an error message. Returns ``phone_number_id``.

    :param phone_number_id: the phone-number ID (templated).
    :param waba_id: the number's WABA, when known, for pacing (templated).
    :param code: the 6-digit code, typically from a template such as the input of a
        ``HITLEntryOperator`` (templated).
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    template_fields: Sequence[str] = ("whatsapp_conn_id", "phone_number_id", "waba_id", "code")
    secret_fields = ("code",)

    def __init__(self, *, code: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.code = code

    def execute_graph(self, context: Context) -> str:
        phone_number_id = self.checked_phone_number_id()
        code = validation.six_digits("code", self.code)
        try:
            self.hook.verify_code(phone_number_id, code)
        except GraphPermanentError as error:
            if error.code == INVALID_PARAMETER and error.error_subcode != OBJECT_MISSING:
                # Said plainly, first, for the person who typed the code: the error below is for support.
                self.log.error(WRONG_CODE_MESSAGE, phone_number_id, error.message)
            raise
        self.log.info("Phone number %s verified", phone_number_id)
        return phone_number_id


PIN_TEMPLATE_FIELDS = ("whatsapp_conn_id", "phone_number_id", "waba_id", "pin", "pin_variable", "pin_conn_id")


class WhatsAppPinBaseOperator(SecretTemplateFieldsMixin, WhatsAppPhoneNumberBaseOperator):
    """
    Resolves the two-step PIN from exactly one of a literal, a Variable or a connection.

    :param pin: the 6-digit PIN, literal or templated.
    :param pin_variable: key of an Airflow Variable holding the PIN.
    :param pin_conn_id: an Airflow connection whose password is the PIN.
    """

    secret_fields = ("pin",)

    def __init__(
        self,
        *,
        pin: str | None = None,
        pin_variable: str | None = None,
        pin_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if sum(source is not None for source in (pin, pin_variable, pin_conn_id)) != 1:
            raise InvalidInputError("pin", "give exactly one of pin, pin_variable or pin_conn_id")
        self.pin = pin
        self.pin_variable = pin_variable
        self.pin_conn_id = pin_conn_id

    def resolved_pin(self) -> str:
        """The PIN, from wherever it was given, masked and checked to be 6 digits."""
        from airflow_provider_whatsapp.hooks.connection import read_pin

        return read_pin(pin=self.pin, pin_variable=self.pin_variable, pin_conn_id=self.pin_conn_id)


class RegisterPhoneNumberOperator(WhatsAppPinBaseOperator):
    """
    Register the number for Cloud API messaging: ``POST /{phone_number_id}/register``.

    Safe to retry: a retried task first reads the number, and one that is already registered is
    not registered again (Graph allows 10 register calls per number per 72 hours); its PIN is set
    to ``pin`` instead. The first try spends no read: Graph's budget is counted in calls. A
    failure that may have been applied is looked up before the call is sent again. The 72-hour
    block (133016) fails the task at once, saying when it ends. Returns ``phone_number_id``.

    :param phone_number_id: the phone-number ID (templated).
    :param waba_id: the number's WABA, when known, for pacing (templated).
    :param pin: the 6-digit two-step PIN (templated); or use ``pin_variable`` or ``pin_conn_id``.
    :param pin_variable: key of an Airflow Variable holding the PIN (templated).
    :param pin_conn_id: an Airflow connection whose password is the PIN (templated).
    :param data_localization_region: ISO-2 region for local storage, e.g. ``DE`` (templated).
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    template_fields: Sequence[str] = (*PIN_TEMPLATE_FIELDS, "data_localization_region")

    def __init__(self, *, data_localization_region: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_localization_region = data_localization_region

    def execute_graph(self, context: Context) -> str:
        phone_number_id = self.checked_phone_number_id()
        region = validation.region(self.data_localization_region)
        # Only a retry can find the number registered by an earlier try of this task.
        check_first = context["ti"].try_number > 1
        self.hook.register_phone_number(
            phone_number_id, self.resolved_pin(), data_localization_region=region, check_first=check_first
        )
        self.log.info("Phone number %s registered", phone_number_id)
        return phone_number_id


class SetTwoStepVerificationPinOperator(WhatsAppPinBaseOperator):
    """
    Set the number's two-step verification PIN: ``POST /{phone_number_id}``.

    Returns ``phone_number_id``.

    :param phone_number_id: the phone-number ID (templated).
    :param waba_id: the number's WABA, when known, for pacing (templated).
    :param pin: the new 6-digit PIN (templated); or use ``pin_variable`` or ``pin_conn_id``.
    :param pin_variable: key of an Airflow Variable holding the PIN (templated).
    :param pin_conn_id: an Airflow connection whose password is the PIN (templated).
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    template_fields: Sequence[str] = PIN_TEMPLATE_FIELDS

    def execute_graph(self, context: Context) -> str:
        phone_number_id = self.checked_phone_number_id()
        self.hook.set_two_step_pin(phone_number_id, self.resolved_pin())
        self.log.info("Two-step PIN set for %s", phone_number_id)
        return phone_number_id


class DeregisterPhoneNumberOperator(WhatsAppPhoneNumberBaseOperator):
    """
    Deregister the number from Cloud API: ``POST /{phone_number_id}/deregister``.

    Returns ``phone_number_id``.

    :param phone_number_id: the phone-number ID (templated).
    :param waba_id: the number's WABA, when known, for pacing (templated).
    :param whatsapp_conn_id: the Airflow connection of type ``whatsapp_business`` (templated).
    """

    template_fields: Sequence[str] = ("whatsapp_conn_id", "phone_number_id", "waba_id")

    def execute_graph(self, context: Context) -> str:
        phone_number_id = self.checked_phone_number_id()
        self.hook.deregister_phone_number(phone_number_id)
        self.log.info("Phone number %s deregistered", phone_number_id)
        return phone_number_id
