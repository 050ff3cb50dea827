"""musher's configuration: the bot.toml models and the loader that explains every problem."""

from config.loader import config_path, load_settings, render_effective
from config.models import Settings

__all__ = ["Settings", "config_path", "load_settings", "render_effective"]
