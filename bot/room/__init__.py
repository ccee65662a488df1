"""The long-running worker in a room: read, persist, claim, decide, reply, learn, re-index."""
