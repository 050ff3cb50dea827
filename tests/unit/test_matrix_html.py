"""The Markdown → HTML renderer behind Matrix ``formatted_body``."""

from __future__ import annotations

import pytest

from transports.matrix.html import render


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("hello", "<p>hello</p>"),
        ("one\ntwo\n\nthree", "<p>one<br>two</p>\n<p>three</p>"),
        ("**bold**, __bold__", "<p><strong>bold</strong>, <strong>bold</strong></p>"),
        ("*it* and _it_", "<p><em>it</em> and <em>it</em></p>"),
        ("`a < b` and **`x`**", "<p><code>a &lt; b</code> and <strong><code>x</code></strong></p>"),
        ("## Status", "<h2>Status</h2>"),
        ("- one\n- **two**", "<ul><li>one</li><li><strong>two</strong></li></ul>"),
        ("1. a\n2. b", "<ol><li>a</li><li>b</li></ol>"),
        ("3. c\n4. d", '<ol start="3"><li>c</li><li>d</li></ol>'),
        ("Items:\n- a", "<p>Items:</p>\n<ul><li>a</li></ul>"),
        (
            "[docs](https://e.org/?a=1&b=2)",
            '<p><a href="https://e.org/?a=1&amp;b=2">docs</a></p>',
        ),
        ("a `**not bold**` b", "<p>a <code>**not bold**</code> b</p>"),
        ("[`x`](https://a.b)", '<p><a href="https://a.b"><code>x</code></a></p>'),
    ],
)
def test_markdown_renders(text: str, html: str) -> None:
    assert render(text) == html


def test_fenced_code_keeps_its_text_and_language() -> None:
    text = "Run:\n```python\nif a < b:\n    print('**x**')\n```\ndone"
    assert render(text) == (
        "<p>Run:</p>\n"
        '<pre><code class="language-python">if a &lt; b:\n'
        "    print(&#x27;**x**&#x27;)\n</code></pre>\n"
        "<p>done</p>"
    )


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "[x](javascript:alert(1))",
        '[x](https://e.org/"onmouseover="alert(1))',
        "```\n</code></pre><script>\n```",
    ],
)
def test_html_in_the_input_never_becomes_markup(text: str) -> None:
    out = render(text)
    assert "<script" not in out and "<img" not in out
    assert 'href="javascript' not in out and '"onmouseover' not in out


@pytest.mark.parametrize("text", ["2 * 3 * 4", "snake_case_name", "a ** b", "price: 5*"])
def test_stray_markers_stay_text(text: str) -> None:
    assert render(text) == f"<p>{text}</p>"
