"""Stored values as inert terminal text: what a trainer or spec wrote is never markup.

A decision value ``[link=http://evil.example]click[/link]``, an emoji code
``:skull:``, an ANSI escape or a right-to-left override in an error tail must
print as the characters it is, in every command and in the live view alike.

``ma2ml.visible`` writes control and bidirectional characters as their escapes
(``\\x1b``, ``\\u202e``); the rest is Rich markup, which has two more ways to
act on text and no complete escape for them:

* Tags. ``rich.markup.escape`` escapes a ``[`` that starts a tag, but Rich
  also turns a ``\\[`` that starts none into ``[``, so a stored backslash would
  be lost. ``_escape`` writes every backslash and bracket so that Rich reads it
  back exactly.
* Emoji codes. Rich replaces ``:name:`` within one run of plain text, and has
  no escape for it; a tag ends the run. So every colon stands between two empty
  tags (``[none][/none]`` styles nothing), and so does the whole text: no run
  of stored text holds two colons, and none joins the caller's text around it.

What a person sees (and copies) is exactly the stored text. Numbers are shown
to ``visible.SIGNIFICANT`` digits (``0.84``, not ``0.8399999999999999``), also
inside lists and dicts.
"""

from __future__ import annotations

from rich.markup import RE_TAGS

from ma2ml.visible import rounded, visible

# A tag that styles nothing (an empty span): it ends a run of plain text.
_BREAK = "[none][/none]"


def inert(value: object) -> str:
    """``value`` as text for Rich markup: control and bidirectional characters as escapes,
    brackets and emoji codes as typed, floats rounded for reading."""
    text = visible(value if isinstance(value, str) else str(rounded(value)))
    if not text:
        return text
    # Tags around every colon, and around the whole, which the caller's text may touch.
    body = f"{_BREAK}:{_BREAK}".join(_escape(piece) for piece in text.split(":"))
    return f"{_BREAK}{body}{_BREAK}"


def _escape(piece: str) -> str:
    """``piece`` as markup that Rich prints as ``piece``, whatever follows it.

    Rich reads n backslashes before a tag as n // 2 backslashes (and an escaped tag when
    n is odd), but n backslashes before a ``[`` that starts no tag as n - 1 and a ``[``.
    """
    out: list[str] = []
    run = 0  # backslashes read and not yet written
    for i, char in enumerate(piece):
        if char == "\\":
            run += 1
            continue
        if char == "[":
            starts_tag = RE_TAGS.match(piece, i) is not None
            out.append("\\" * (2 * run + 1 if starts_tag else run + bool(run)))
        else:
            out.append("\\" * run)
        run = 0
        out.append(char)
    # Backslashes at the end come before a tag of ours (``inert`` ends with one): doubled.
    out.append("\\" * (2 * run))
    return "".join(out)
