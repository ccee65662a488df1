"""The support bot: the room service, retrieval and answering, storage, the web UI and the CLI.

The packages are layered (checked by import-linter, ``[tool.importlinter]`` in pyproject.toml):
``cli`` and ``web`` on top, then ``room`` (and the offline ``evaluation`` and ``importers``),
then ``index_builder``, ``answering``, ``retrieval`` / ``store`` / ``gitter_client``, then
``chat`` / ``corpus``, and the basics (``settings``, ``errors``, ``logs``, ``metrics``).
"""
