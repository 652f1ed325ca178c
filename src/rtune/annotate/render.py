"""Model text as safe HTML: Markdown rendered on the server, raw HTML never passed through.

markdown-it-py in CommonMark mode with `html` off escapes every tag in the text (`<script>` shows
as text), and its link validation drops `javascript:`, `vbscript:`, `file:` and `data:` URLs, so
such a link stays literal text. Images are not rendered (the page loads nothing a model names);
links open in a new tab without a referrer, so the session token in the page's URL never leaks.
"""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"]).disable("image")


def _link_open(renderer, tokens, idx, options, env):
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    return renderer.renderToken(tokens, idx, options, env)


_MD.add_render_rule("link_open", _link_open)


@lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    """HTML for `text`, safe to insert into the page."""
    return _MD.render(text)
