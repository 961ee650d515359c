"""All SQL about users, accounts, memberships, API keys, auth sessions and sign-in counters."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute

from shoal.auth.principal import Principal
from shoal.db.models import (
    Account,
    AccountMember,
    ApiKey,
    AuthSession,
    LoginAttempt,
    RefreshToken,
    User,
)
from shoal.db.repository import RepositoryBase
from shoal.kit.ids import new_id
from shoal.kit.pagination import TimeCursor
from shoal.kit.time import utcnow


def member_account_ids(principal: Principal) -> Select[uuid.UUID]:
    """The accounts whose resources ``principal`` may read and write (as a subquery).

    The one tenant filter: every repository that lists or loads tenant data by id uses it.
    An API key is confined to its own account, and only while its creator is still a member.
    """
    query = select(AccountMember.account_id).where(AccountMember.user_id == principal.user_id)
    if principal.key_account_id is not None:
        query = query.where(AccountMember.account_id == principal.key_account_id)
    return query


def _after(
    cursor: TimeCursor | None,
    created_at: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[uuid.UUID],
) -> ColumnElement[bool]:
    """Keyset condition for a newest-first list ordered by ``(created_at, id)``."""
    if cursor is None:
        return true()
    return or_(
        created_at < cursor.created_at,
        and_(created_at == cursor.created_at, ident < cursor.id),
    )


class AccountRepository(RepositoryBase):
    # -- users --------------------------------------------------------------------------------
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
        user_metadata: dict[str, Any] | None = None,
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

    async def create_user_unless_exists(
        self, *, email: str, password_hash: str, user_metadata: dict[str, Any] | None = None
    ) -> User | None:
        """Create a user; ``None`` when the email is taken (also when a concurrent signup won)."""
        try:
            async with self.session.begin_nested():
                return await self.create_user(
                    email=email, password_hash=password_hash, user_metadata=user_metadata
                )
        except IntegrityError:
            return None

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

    async def mark_signed_in(self, user: User) -> None:
        user.last_sign_in_at = utcnow()
        await self.session.flush()

    # -- accounts and members -----------------------------------------------------------------
    async def member_role(self, account_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
        result = await self.session.execute(
            select(AccountMember.role).where(
                AccountMember.account_id == account_id, AccountMember.user_id == user_id
            )
        )
        return result.scalar_one_or_none()

    async def get_account(self, account_id: uuid.UUID) -> Account | None:
        return await self.session.get(Account, account_id)

    def _accounts_with_role(self, principal: Principal) -> Select[Account, str]:
        return (
            select(Account, AccountMember.role)
            .join(AccountMember, AccountMember.account_id == Account.account_id)
            .where(Account.account_id.in_(member_account_ids(principal)))
            .where(AccountMember.user_id == principal.user_id)
        )

    async def account_with_role(
        self, principal: Principal, account_id: uuid.UUID
    ) -> tuple[Account, str] | None:
        """The account and the caller's role in it; ``None`` when the caller may not see it."""
        result = await self.session.execute(
            self._accounts_with_role(principal).where(Account.account_id == account_id)
        )
        row = result.one_or_none()
        return None if row is None else (row[0], row[1])

    async def accounts_of(
        self, principal: Principal, *, limit: int, cursor: TimeCursor | None = None
    ) -> Sequence[tuple[Account, str]]:
        """Accounts the caller belongs to, newest first (one page of ``limit``)."""
        result = await self.session.execute(
            self._accounts_with_role(principal)
            .where(_after(cursor, Account.created_at, Account.account_id))
            .order_by(Account.created_at.desc(), Account.account_id.desc())
            .limit(limit)
        )
        return [(row[0], row[1]) for row in result.all()]

    async def create_account(self, *, name: str, owner_id: uuid.UUID) -> Account:
        account = Account(name=name, personal=False, primary_owner_user_id=owner_id)
        self.session.add(account)
        await self.session.flush()
        self.session.add(
            AccountMember(account_id=account.account_id, user_id=owner_id, role="owner")
        )
        await self.session.flush()
        return account

    async def members(
        self, account_id: uuid.UUID, *, limit: int, cursor: TimeCursor | None = None
    ) -> Sequence[tuple[AccountMember, User]]:
        """Members of an account with their user, newest membership first."""
        result = await self.session.execute(
            select(AccountMember, User)
            .join(User, User.id == AccountMember.user_id)
            .where(AccountMember.account_id == account_id)
            .where(_after(cursor, AccountMember.created_at, AccountMember.user_id))
            .order_by(AccountMember.created_at.desc(), AccountMember.user_id.desc())
            .limit(limit)
        )
        return [(row[0], row[1]) for row in result.all()]

    async def get_member(self, account_id: uuid.UUID, user_id: uuid.UUID) -> AccountMember | None:
        return await self.session.get(AccountMember, (account_id, user_id))

    async def upsert_member(
        self, account_id: uuid.UUID, user_id: uuid.UUID, role: str
    ) -> tuple[AccountMember, bool]:
        """Add a member or change their role; returns ``(member, created)``."""
        member = await self.get_member(account_id, user_id)
        created = member is None
        if member is None:
            member = AccountMember(account_id=account_id, user_id=user_id, role=role)
            self.session.add(member)
        else:
            member.role = role
        await self.session.flush()
        return member, created

    async def remove_member(self, account_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(AccountMember).where(
                AccountMember.account_id == account_id, AccountMember.user_id == user_id
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def count_owners(self, account_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.count()).where(
                AccountMember.account_id == account_id, AccountMember.role == "owner"
            )
        )
        return int(result.scalar_one())

    # -- API keys -----------------------------------------------------------------------------
    async def create_api_key(
        self,
        *,
        account_id: uuid.UUID,
        created_by_user_id: uuid.UUID,
        name: str,
        prefix: str,
        secret_hash: str,
    ) -> ApiKey:
        key = ApiKey(
            account_id=account_id,
            created_by_user_id=created_by_user_id,
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            created_at=utcnow(),
        )
        self.session.add(key)
        await self.session.flush()
        return key

    async def api_keys(
        self, account_id: uuid.UUID, *, limit: int, cursor: TimeCursor | None = None
    ) -> Sequence[ApiKey]:
        result = await self.session.execute(
            select(ApiKey)
            .where(ApiKey.account_id == account_id)
            .where(_after(cursor, ApiKey.created_at, ApiKey.key_id))
            .order_by(ApiKey.created_at.desc(), ApiKey.key_id.desc())
            .limit(limit)
        )
        return result.scalars().all()

    async def readable_api_key(self, principal: Principal, key_id: uuid.UUID) -> ApiKey | None:
        """A key of one of the caller's accounts (tenant-filtered), else ``None``."""
        result = await self.session.execute(
            select(ApiKey).where(
                ApiKey.key_id == key_id, ApiKey.account_id.in_(member_account_ids(principal))
            )
        )
        return result.scalar_one_or_none()

    async def delete_api_key(self, key: ApiKey) -> None:
        await self.session.delete(key)
        await self.session.flush()

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

    # -- auth sessions and refresh tokens -------------------------------------------------------
    async def get_auth_session(self, session_id: uuid.UUID) -> AuthSession | None:
        return await self.session.get(AuthSession, session_id)

    async def create_auth_session(
        self, *, user_id: uuid.UUID, user_agent: str | None
    ) -> AuthSession:
        auth_session = AuthSession(
            user_id=user_id,
            created_at=utcnow(),
            user_agent=(user_agent or None) and user_agent[:512],
        )
        self.session.add(auth_session)
        await self.session.flush()
        return auth_session

    async def revoke_sessions(
        self,
        *,
        user_id: uuid.UUID,
        only: uuid.UUID | None = None,
        keep: uuid.UUID | None = None,
    ) -> None:
        """Revoke the user's live sessions: just ``only``, or all but ``keep``, or all."""
        query = update(AuthSession).where(
            AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
        )
        if only is not None:
            query = query.where(AuthSession.id == only)
        if keep is not None:
            query = query.where(AuthSession.id != keep)
        await self.session.execute(query.values(revoked_at=utcnow()))

    async def add_refresh_token(
        self,
        *,
        session_id: uuid.UUID,
        token_hash: str,
        expires_at: datetime,
        parent_id: uuid.UUID | None = None,
    ) -> RefreshToken:
        token = RefreshToken(
            session_id=session_id,
            token_hash=token_hash,
            parent_id=parent_id,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        self.session.add(token)
        await self.session.flush()
        return token

    async def refresh_token_by_hash(self, token_hash: str) -> RefreshToken | None:
        result = await self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def use_refresh_token(self, token: RefreshToken) -> bool:
        """Mark ``token`` used; ``False`` when another request used it first (a reuse)."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
            .values(used_at=utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_session_refreshed(self, auth_session: AuthSession) -> None:
        auth_session.refreshed_at = utcnow()
        await self.session.flush()

    # -- sign-in rate limit ---------------------------------------------------------------------
    async def count_login_attempt(self, key: str, window_start: datetime) -> int:
        """Add one attempt to ``key``'s window and return the window's count (atomic upsert)."""
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(LoginAttempt)
            .values(id=new_id(), key=key, window_start=window_start, count=1)
            .on_conflict_do_update(
                index_elements=[LoginAttempt.key, LoginAttempt.window_start],
                set_={"count": LoginAttempt.count + 1},
            )
            .returning(LoginAttempt.count)
        )
        result = await self.session.execute(statement)
        return int(result.scalar_one())

    async def login_attempts(self, key: str, window_start: datetime) -> int:
        result = await self.session.execute(
            select(LoginAttempt.count).where(
                LoginAttempt.key == key, LoginAttempt.window_start == window_start
            )
        )
        return int(result.scalar_one_or_none() or 0)

    async def uncount_login_attempt(self, key: str, window_start: datetime) -> None:
        await self.session.execute(
            update(LoginAttempt)
            .where(LoginAttempt.key == key, LoginAttempt.window_start == window_start)
            .values(count=LoginAttempt.count - 1)
        )

    async def purge_login_attempts(self, *, before: datetime, keys: Sequence[str] = ()) -> None:
        """Drop finished windows (of ``keys`` only, when given)."""
        query = delete(LoginAttempt).where(LoginAttempt.window_start < before)
        if keys:
            query = query.where(LoginAttempt.key.in_(list(keys)))
        await self.session.execute(query)
