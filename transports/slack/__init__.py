"""The Slack transport (slack-bolt, async): Socket Mode or HTTP mode; see ``app.py``."""
