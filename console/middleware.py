"""Request hygiene that every later layer can rely on."""


class StripNulFromHeaders:
    """Remove NUL characters from the request's HTTP headers.

    No legitimate header holds one, and PostgreSQL refuses to store one: a
    hostile User-Agent would otherwise turn a failed sign-in (which django-axes
    records with its user agent) or an audit row into a server error.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        meta = request.META
        for name, value in list(meta.items()):
            if name.startswith("HTTP_") and isinstance(value, str) and "\x00" in value:
                meta[name] = value.replace("\x00", "")
        return self.get_response(request)
