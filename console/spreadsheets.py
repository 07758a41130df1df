"""What the console's CSV exports have in common: they are opened in
spreadsheets, and their cells hold text that came from Skyvern or from people.
"""

# A cell starting with one of these is a formula (or, for | and %, a DDE or
# macro trigger) in at least one spreadsheet program.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "|", "%")


def csv_safe(value) -> str:
    """Text a spreadsheet would take for a formula is prefixed with a quote."""
    text = "" if value is None else str(value)
    if text[:1] in FORMULA_STARTS:
        return "'" + text
    return text
