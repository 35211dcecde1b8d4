"""Checkpoint stores: where the next cursor to read is kept per project/logstore/shard (and scope).

Nothing is imported here: an FC instance imports the one store it is configured for (the SLS store brings the
SDK with it).
"""
