"""Who counts as a maintainer or a moderator in a room, from the settings and power levels."""

from __future__ import annotations

from bot.chat.events import PowerLevels
from bot.chat.transport import ChatTransport
from bot.settings import Settings


class RoomRoles:
    """Owns the trust questions the handler and learning ask about a room's members. Power
    levels are read from the transport at each use: it follows ``m.room.power_levels``
    changes in the sync."""

    def __init__(self, settings: Settings, transport: ChatTransport) -> None:
        self.transport = transport
        self.maintainers = frozenset(settings.maintainers)
        self.maintainer_power_level = settings.maintainer_power_level

    def _power(self, room_id: str) -> PowerLevels | None:
        return self.transport.power_levels.get(room_id)

    def is_trusted(self, room_id: str, user: str) -> bool:
        """A configured maintainer, or at the maintainers' power level in the room."""
        if user in self.maintainers:
            return True
        levels = self._power(room_id)
        return levels is not None and levels.of(user) >= self.maintainer_power_level

    def is_moderator(self, room_id: str, user: str) -> bool:
        """May redact other people's messages in the room (by power level, as the server
        decides; a configured maintainer without that level may not)."""
        levels = self._power(room_id)
        return levels is not None and levels.of(user) >= levels.redact
