"""The web console: musher's own page and its JSON/SSE API (X6), the embedded default."""
