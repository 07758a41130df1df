from console.skyvern.client import WORKFLOW_RUN_ID


class RunIdConverter:
    """Skyvern workflow run ids (wr_…); anything else in the URL is a 404."""

    regex = WORKFLOW_RUN_ID.pattern  # exactly what the Skyvern client accepts

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value
