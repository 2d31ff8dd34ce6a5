"""A loaded installation: the validated config, its database, and each account's rule pack."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from engine.config.model import AccountConfig, Config
from engine.errors import ConfigError, Problem
from engine.rules.pack import RulePack, load_pack
from engine.storage.db import open_database


class Runtime:
    """Everything needed to process mail for one config; packs are loaded (and refused) up front."""

    def __init__(self, config: Config, *, open_db: bool = True) -> None:
        self.config = config
        self.packs: dict[str, RulePack] = {}
        problems: list[Problem] = []
        for account in config.accounts:
            try:
                self.packs[account.name] = load_pack(
                    account.rule_pack, config.base_dir, where=config.account_spans(account).of("rule_pack")
                )
            except ConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ConfigError(dict.fromkeys(problems))
        self._engine: Engine | None = (
            open_database(config.database, config.database_timeouts) if open_db else None
        )
        self.our_addresses = config.own_addresses()

    @property
    def engine(self) -> Engine:
        """The database engine (opened on construction)."""
        if self._engine is None:
            self._engine = open_database(self.config.database, self.config.database_timeouts)
        return self._engine

    def pack_for(self, account: AccountConfig) -> RulePack:
        """The rule pack an account runs."""
        return self.packs[account.name]

    def close(self) -> None:
        """Release the database connections."""
        if self._engine is not None:
            self._engine.dispose()
