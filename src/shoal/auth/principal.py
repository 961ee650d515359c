"""Who is calling."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    A JWT acts for its user in every account the user belongs to. An API key acts for exactly
    one account (``key_account_id``) on behalf of the user who created it.
    """

    user_id: uuid.UUID
    via: Literal["jwt", "api_key"]
    email: str | None = None
    session_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None
    key_account_id: uuid.UUID | None = None

    @property
    def personal_account_id(self) -> uuid.UUID:
        return self.user_id
