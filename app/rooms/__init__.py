"""Classroom rooms (issue 7): a lecturer's room that students join with a short code.

``store`` persists rooms, members and challenge results (SQLAlchemy Core, migrations);
``hub`` broadcasts to a room (in-process, or Redis pub/sub across workers); ``service``
holds the rules (tokens, expiry, caps, rate limits, leaderboards); ``member`` is one
student session's membership; ``routes`` the HTTP API and the lecturer dashboard socket.
"""
