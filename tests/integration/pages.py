"""Helpers for the real-browser tests of the web page (see the ``open_page`` fixture)."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect

OpenPage = Callable[..., Page]
WAIT_MS = 20_000


def say(page: Page, text: str) -> None:
    """Type ``text`` into the chat box, send it with Enter, and wait for the bot's reply."""
    replies = page.locator("#messages .msg.bot")
    before = replies.count()
    page.locator("#text").fill(text)
    page.locator("#text").press("Enter")
    expect(replies).to_have_count(before + 1, timeout=WAIT_MS)


def column(page: Page, name: str) -> Locator:
    return page.locator(f'#board [data-column="{name}"]')


def card(page: Page, column_name: str, number: int) -> Locator:
    return column(page, column_name).locator(f'.card[data-number="{number}"]')
