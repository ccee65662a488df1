"""Compose the bot's suggested reply from ranked documents: sources, the code example, the
Keras 3 notes, what is missing, the rendering; and the room policy (who is asking, when)."""
