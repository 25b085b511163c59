"""Text from outside (file names, model labels, server messages) shown as exactly that text.

Qt treats a tooltip, a message box's text or a label's text as rich text when it merely looks
like HTML (`Qt.mightBeRichText`): a file called `<b>x</b>.pdf` would show as a bold "x". A
tooltip has no plain-text switch, so the text is escaped and wrapped in `<qt>`, which makes Qt
read it as rich text whose characters are the original ones.
"""

from __future__ import annotations

from html import escape


def tooltip(text: str) -> str:
    """`text` as a tooltip that shows it literally (line breaks kept)."""
    if not text:
        return ""
    return "<qt>" + escape(text).replace("\n", "<br>") + "</qt>"
