"""The Matrix transport (matrix-nio): login, a sync loop that journals before it advances,
room and invite policy, and idempotent ``m.notice`` replies."""
