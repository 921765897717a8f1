"""What a hub's first use makes: user ``root`` (with its organization) and site ``hq``.

The first start of a hub runs it, and so does the first ``ferry hub import`` or ``ferry
hub shell`` on a hub that was never started: an admin may fill a new hub before it ever
serves. Later runs change nothing. Root's password is ``FERRY_ROOT_PASSWORD`` when set
(checked as any password is), else a new random one written to ``root-password.txt`` in
the data folder, readable by its owner only, and shown once by whoever made it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from core.errors import ConfigError
from hub.entities.sites import DEFAULT_SITE
from hub.entities.users import ROOT, ROOT_ROLE
from hub.errors import Invalid
from hub.permissions import ROOT_ORGANIZATION, role_id
from hub.security import check_password_strength, hash_secret_async, new_password
from hub.storage.db import Database
from hub.storage.models import Organization, Site, User, new_id, user_roles, utcnow

log = structlog.get_logger("hub.bootstrap")

ROOT_PASSWORD_ENV = "FERRY_ROOT_PASSWORD"
ROOT_PASSWORD_FILE = "root-password.txt"


@dataclass(frozen=True)
class Made:
    """What this run made: whether it made root, and root's new password and its file
    when the password is not the one the environment gave."""

    root: bool = False
    root_password: str | None = None
    root_password_file: Path | None = None

    def lines(self) -> list[str]:
        """What to tell whoever made it (the password: once)."""
        if not self.root:
            return []
        if self.root_password_file is None:
            return [f"this hub had never started: made user root (password from "
                    f"{ROOT_PASSWORD_ENV}) and site {DEFAULT_SITE}, as a first start would"]
        return [f"this hub had never started: made user root and site {DEFAULT_SITE}, as a "
                "first start would",
                f"root password: {self.root_password}  (shown once; also in "
                f"{self.root_password_file}, readable by its owner only)"]


def write_secret_file(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (never group or world)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.chmod(path, 0o600)


async def has_root(db: Database) -> bool:
    async with db.read() as conn:
        return (await conn.execute(select(User.id).where(User.role == ROOT_ROLE))).first() \
            is not None


async def bootstrap(db: Database, data_dir: Path) -> Made:
    """Make root and hq when missing (several hub processes may race: one wins)."""
    made = Made()
    if not await has_root(db):
        made = await _make_root(db, data_dir)
    async with db.read() as conn:
        has_site = (await conn.execute(select(Site.id).where(Site.name == DEFAULT_SITE))).first()
    if has_site is None:
        now = utcnow()
        try:
            async with db.write() as conn:
                await conn.execute(insert(Site).values(
                    id=new_id(), name=DEFAULT_SITE, description="main site", created=now,
                    modified=now))
        except IntegrityError:
            pass  # another hub process on this database made it first
    return made


def _root_password(data_dir: Path) -> tuple[str, Path | None]:
    given = os.environ.get(ROOT_PASSWORD_ENV)
    if given is not None:
        try:
            check_password_strength(given)
        except Invalid as exc:
            raise ConfigError(f"{ROOT_PASSWORD_ENV} is refused: {exc.message}") from None
        return given, None
    password = new_password()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / ROOT_PASSWORD_FILE
    write_secret_file(path, password)
    return password, path


async def _make_root(db: Database, data_dir: Path) -> Made:
    password, path = _root_password(data_dir)
    hashed = await hash_secret_async(password)
    now = utcnow()
    try:
        async with db.write() as conn:
            org = (await conn.execute(select(Organization.id).where(
                Organization.name == ROOT_ORGANIZATION))).scalar()
            if org is None:
                org = new_id()
                await conn.execute(insert(Organization).values(
                    id=org, name=ROOT_ORGANIZATION, domain="", address1="", address2="",
                    zipcode="", country="", public_key="", created=now, modified=now))
            user_id = new_id()
            await conn.execute(insert(User).values(
                id=user_id, username=ROOT, password_hash=hashed, role=ROOT_ROLE,
                organization_id=org, firstname="", lastname="", created=now, modified=now))
            await conn.execute(insert(user_roles).values(user_id=user_id,
                                                         role_id=role_id(ROOT_ROLE)))
    except IntegrityError:  # another hub process on this database made root first
        if path is not None:
            path.unlink(missing_ok=True)
        log.info("user root was made by another hub process")
        return Made()
    log.info("created user root", password_from=ROOT_PASSWORD_ENV if path is None else str(path))
    return Made(True, None if path is None else password, path)
