import html
import re

TAG = re.compile(r"<[^>]+>")


def page_text(response) -> str:
    """What a person reads on the page: tags dropped, entities decoded,
    white space folded."""
    text = TAG.sub(" ", response.content.decode())
    return " ".join(html.unescape(text).split())
