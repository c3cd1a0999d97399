"""The exception tree below the API layer. HTTP status codes are chosen only in `api/`.

ChronoscopeError
├── BadInput          the user's input cannot be used (their fix: another file, another query)
│   ├── BadVideo      unreadable, truncated, no video stream, unsupported codec, absurd size
│   ├── BadQuery      bad time range, unknown kind, empty query
│   └── AmbiguousId   an id prefix that several videos share (the message lists them)
├── NotFound          no such video
├── ModelUnavailable  weights could not be resolved; the message says how to provide them
└── TransientError    worth a retry (database or broker hiccup)

Driver errors are mapped to these at the boundary that knows them: database outages in
store.db (session_scope, get_engine, ping), broker outages in workers.broker. The API answers
TransientError with 503 and Retry-After; Celery tasks retry it with backoff.
"""


class ChronoscopeError(Exception):
    """Base of every error chronoscope raises on purpose."""


class BadInput(ChronoscopeError):
    pass


class BadVideo(BadInput):
    pass


class BadQuery(BadInput):
    pass


class AmbiguousId(BadInput):
    pass


class NotFound(ChronoscopeError):
    pass


class ModelUnavailable(ChronoscopeError):
    pass


class TransientError(ChronoscopeError):
    pass
