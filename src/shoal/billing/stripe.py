"""The Stripe adapter: the only module that imports ``stripe``.

Every call is bounded (``SHOAL_STRIPE_TIMEOUT_SECONDS``, no library retries) and every Stripe
failure — 5xx, timeout, refused connection, bad key — becomes 503 ``dependency_unavailable``.
Nothing on the run path calls this module: runs read subscription state from the database.
``STRIPE_API_BASE`` points the library at another server (tests use a local fake).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

import stripe  # noqa: TID251 - this is the adapter
import structlog

from shoal.config import Settings
from shoal.errors import BadRequest, DependencyUnavailable

log = structlog.get_logger(__name__)
T = TypeVar("T")


class InvalidSignature(BadRequest):
    code = "invalid_signature"


def verify_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event in a webhook body, after checking its ``Stripe-Signature`` (else 400)."""
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, secret, tolerance=stripe.Webhook.DEFAULT_TOLERANCE
        )
    except stripe.SignatureVerificationError:
        raise InvalidSignature("The Stripe-Signature header does not match the body.") from None
    try:
        event = json.loads(payload)
    except ValueError:
        raise BadRequest("The webhook body is not JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise BadRequest("The webhook body is not a Stripe event.")
    return event


class StripeGateway:
    """The few Stripe API calls billing makes. Use as ``async with StripeGateway(settings)``."""

    def __init__(self, settings: Settings) -> None:
        if not settings.stripe_secret_key:
            raise DependencyUnavailable("Stripe is not configured (STRIPE_SECRET_KEY).")
        self.timeout = settings.stripe_timeout_seconds
        self._http = stripe.HTTPXClient(timeout=self.timeout)
        base = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
        self._client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=0,
            http_client=self._http,
        )

    async def __aenter__(self) -> StripeGateway:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError:
            log.warning("stripe_timeout", call=what, timeout=self.timeout)
            raise DependencyUnavailable(
                "Stripe did not answer in time; try again shortly."
            ) from None
        except stripe.StripeError as exc:
            log.warning(
                "stripe_error",
                call=what,
                error=type(exc).__name__,
                http_status=exc.http_status,
                stripe_code=exc.code,
            )
            raise DependencyUnavailable(
                "Stripe is unavailable or refused the request; try again shortly."
            ) from None

    async def create_customer(self, *, account_id: uuid.UUID, email: str | None, name: str) -> str:
        """A new Stripe customer for the account (idempotent per account for a day)."""
        params: dict[str, Any] = {"name": name, "metadata": {"account_id": str(account_id)}}
        if email:
            params["email"] = email
        customer = await self._call(
            "customers.create",
            self._client.v1.customers.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"shoal-customer-{account_id}"},
            ),
        )
        return str(customer.id)

    async def create_checkout_session(
        self,
        *,
        account_id: uuid.UUID,
        customer_id: str,
        price_id: str,
        plan: str,
        success_url: str,
        cancel_url: str,
    ) -> tuple[str, str]:
        """A subscription checkout for one price: ``(session id, url)``."""
        metadata = {"account_id": str(account_id), "plan": plan}
        params: dict[str, Any] = {
            "mode": "subscription",
            "customer": customer_id,
            "client_reference_id": str(account_id),
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
        }
        session = await self._call(
            "checkout.sessions.create",
            self._client.v1.checkout.sessions.create_async(params),  # type: ignore[arg-type]
        )
        return str(session.id), str(session.url)

    async def create_portal_session(self, *, customer_id: str, return_url: str) -> str:
        """A customer-portal session URL (manage or cancel the subscription)."""
        params: dict[str, Any] = {"customer": customer_id, "return_url": return_url}
        session = await self._call(
            "billing_portal.sessions.create",
            self._client.v1.billing_portal.sessions.create_async(params),  # type: ignore[arg-type]
        )
        return str(session.url)

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The subscription as Stripe knows it now, as plain JSON data."""
        subscription = await self._call(
            "subscriptions.retrieve",
            self._client.v1.subscriptions.retrieve_async(subscription_id),
        )
        data: dict[str, Any] = subscription.to_dict()
        return data
