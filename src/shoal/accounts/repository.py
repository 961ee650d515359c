"""All SQL about users, accounts, memberships, API keys and auth sessions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, delete, select, update
from sqlalchemy.exc import IntegrityError

from shoal.auth.principal import Principal
from shoal.db.models import Account, AccountMember, ApiKey, AuthSession, User
from shoal.db.repository import RepositoryBase
from shoal.kit.time import utcnow


def member_account_ids(principal: Principal) -> Select[tuple[uuid.UUID]]:
    """The accounts whose resources ``principal`` may read and write (as a subquery).

    The one tenant filter: every repository that lists or loads tenant data by id uses it.
    An API key is confined to its own account, and only while its creator is still a member.
    """
    query = select(AccountMember.account_id).where(AccountMember.user_id == principal.user_id)
    if principal.key_account_id is not None:
        query = query.where(AccountMember.account_id == principal.key_account_id)
    return query


class AccountRepository(RepositoryBase):
    async def get_user(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_user_by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()

    async def create_user(
        self,
        *,
        email: str | None,
        password_hash: str | None,
        user_id: uuid.UUID | None = None,
        user_metadata: dict[str, object] | None = None,
        confirmed: bool = True,
    ) -> User:
        """Create a user with their personal account (``account_id == user_id``, owner)."""
        now = utcnow()
        user = User(
            id=user_id or uuid.uuid4(),
            email=email.lower() if email else None,
            password_hash=password_hash,
            email_confirmed_at=now if confirmed else None,
            user_metadata=dict(user_metadata or {}),
            app_metadata={"provider": "email", "providers": ["email"]},
        )
        self.session.add(user)
        await self.session.flush()
        name = (email or "personal").split("@")[0]
        self.session.add(
            Account(account_id=user.id, name=name, personal=True, primary_owner_user_id=user.id)
        )
        await self.session.flush()
        self.session.add(AccountMember(account_id=user.id, user_id=user.id, role="owner"))
        await self.session.flush()
        return user

    async def ensure_user(self, *, user_id: uuid.UUID, email: str | None) -> User:
        """The user for a verified external token; created with their account on first sight."""
        user = await self.get_user(user_id)
        if user is not None:
            return user
        try:
            async with self.session.begin_nested():
                return await self.create_user(email=email, password_hash=None, user_id=user_id)
        except IntegrityError:
            # A concurrent request created it first (or the email is taken by another id).
            user = await self.get_user(user_id)
            if user is None:
                return await self.create_user(email=None, password_hash=None, user_id=user_id)
            return user

    async def member_role(self, account_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
        result = await self.session.execute(
            select(AccountMember.role).where(
                AccountMember.account_id == account_id, AccountMember.user_id == user_id
            )
        )
        return result.scalar_one_or_none()

    async def get_account(self, account_id: uuid.UUID) -> Account | None:
        return await self.session.get(Account, account_id)

    async def accounts_of(self, principal: Principal) -> Sequence[tuple[Account, str]]:
        result = await self.session.execute(
            select(Account, AccountMember.role)
            .join(AccountMember, AccountMember.account_id == Account.account_id)
            .where(Account.account_id.in_(member_account_ids(principal)))
            .where(AccountMember.user_id == principal.user_id)
            .order_by(Account.created_at.desc(), Account.account_id.desc())
        )
        return [(row[0], row[1]) for row in result.all()]

    async def create_account(self, *, name: str, owner_id: uuid.UUID) -> Account:
        account = Account(name=name, personal=False, primary_owner_user_id=owner_id)
        self.session.add(account)
        await self.session.flush()
        self.session.add(AccountMember(account_id=account.account_id, user_id=owner_id, role="owner"))
        await self.session.flush()
        return account

    async def members(self, account_id: uuid.UUID) -> Sequence[tuple[AccountMember, User]]:
        result = await self.session.execute(
            select(AccountMember, User)
            .join(User, User.id == AccountMember.user_id)
            .where(AccountMember.account_id == account_id)
            .order_by(AccountMember.created_at.desc(), AccountMember.user_id.desc())
        )
        return [(row[0], row[1]) for row in result.all()]

    async def upsert_member(self, account_id: uuid.UUID, user_id: uuid.UUID, role: str) -> AccountMember:
        member = await self.session.get(AccountMember, (account_id, user_id))
        if member is None:
            member = AccountMember(account_id=account_id, user_id=user_id, role=role)
            self.session.add(member)
        else:
            member.role = role
        await self.session.flush()
        return member

    async def remove_member(self, account_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(AccountMember).where(
                AccountMember.account_id == account_id, AccountMember.user_id == user_id
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def count_owners(self, account_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(AccountMember.user_id).where(
                AccountMember.account_id == account_id, AccountMember.role == "owner"
            )
        )
        return len(result.all())

    # -- API keys -----------------------------------------------------------------------------
    async def api_key_by_hash(self, secret_hash: str) -> ApiKey | None:
        result = await self.session.execute(select(ApiKey).where(ApiKey.secret_hash == secret_hash))
        return result.scalar_one_or_none()

    async def touch_api_key(self, key: ApiKey) -> None:
        now = utcnow()
        last = key.last_used_at
        if last is None or (now - last).total_seconds() > 60:
            await self.session.execute(
                update(ApiKey).where(ApiKey.key_id == key.key_id).values(last_used_at=now)
            )

    # -- sessions -----------------------------------------------------------------------------
    async def get_auth_session(self, session_id: uuid.UUID) -> AuthSession | None:
        return await self.session.get(AuthSession, session_id)
