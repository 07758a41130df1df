class RunIdConverter:
    """Skyvern workflow run ids (wr_…); anything else in the URL is a 404."""

    regex = r"wr_[A-Za-z0-9_-]{1,100}"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value
