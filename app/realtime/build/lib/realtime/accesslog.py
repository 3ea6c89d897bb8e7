"""gunicorn's access log without credentials: the `es-meta` token of a stream's next link is a
bearer credential (valid an hour), and gunicorn would log it in full with the request line."""

import re

from gunicorn.glogging import Logger

CREDENTIAL = re.compile(r"(?<=[?&]es-meta=)[^&\s]*|(?<=^es-meta=)[^&\s]*")


def redact(text: str) -> str:
    return CREDENTIAL.sub("[redacted]", text)


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "q"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
