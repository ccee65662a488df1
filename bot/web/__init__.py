"""The bot's HTTP side: health probes, the maintainers' dashboard and the local room page.

``app.build_app`` assembles them; handlers reach the running service only through the
``WebContext`` in ``context``.
"""
