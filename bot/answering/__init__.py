"""Compose the bot's suggested reply from ranked documents."""

from bot.answering.reply import Source, SuggestedReply, compose_reply

__all__ = ["Source", "SuggestedReply", "compose_reply"]
