"""Alembic migrations for the bot's database, run by :class:`bot.store.database.Database`.

They are used programmatically (no ``alembic.ini``): ``Database.upgrade()`` builds an
``alembic.config.Config`` whose ``script_location`` is this folder and hands its own connection
to ``env.py`` through ``config.attributes["connection"]``.

Adding a revision: change ``bot/store/models.py``, then write ``versions/NNNN_what.py`` by
hand (``revision = "NNNN"``, ``down_revision`` the previous one) with explicit ``op`` calls;
use ``op.batch_alter_table`` for changes to existing tables so they also work on SQLite.
``tests/store/test_migrations.py`` fails while the migrated schema and the models disagree,
and shows the differences.
"""
