"""Chat without a protocol library: event types, the transport contract, the local room's
transport and input checks. The Matrix transport is ``bot.gitter_client``.
"""
