"""The exception tree below the API layer. HTTP status codes are chosen only in `api/`.

ChronoscopeError
├── BadInput          the user's input cannot be used (their fix: another file, another query)
│   ├── BadVideo      unreadable, truncated, no video stream, unsupported codec, absurd size
│   └── BadQuery      bad time range, unknown kind, empty query
├── NotFound          no such video
├── ModelUnavailable  weights could not be resolved; the message says how to provide them
└── TransientError    worth a retry (database or broker hiccup)
"""


class ChronoscopeError(Exception):
    """Base of every error chronoscope raises on purpose."""


class BadInput(ChronoscopeError):
    pass


class BadVideo(BadInput):
    pass


class BadQuery(BadInput):
    pass


class NotFound(ChronoscopeError):
    pass


class ModelUnavailable(ChronoscopeError):
    pass


class TransientError(ChronoscopeError):
    pass
