from server.tests.pairing_support import db, sessions, settings

__all__ = ["db", "sessions", "settings"]
