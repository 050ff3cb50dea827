"""The Discord transport (discord.py gateway, application commands, interactions endpoint)."""
