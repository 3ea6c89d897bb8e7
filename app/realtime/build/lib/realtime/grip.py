"""A hosted GRIP service (Fanout) in place of the kit's Pushpin nodes: GRIP_URL.

    GRIP_URL=https://api.fanout.io/realm/REALM?iss=REALM&key=base64:KEY
    GRIP_URL=https://api.fastly.com/service/ID?key=TOKEN&verify-iss=fastly:ID&verify-key=...

The URL is the service's publish endpoint (`/publish/` is appended), as django-grip and the
GRIP libraries read it: with `iss`, each publish carries a JWT that claims it, signed with
`key`; with `key` alone, `key` is sent as a bearer token. The requests the service makes to
the app are signed (Grip-Sig) with `verify-key` (default: `key`), issued by `verify-iss`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
from gripcontrol import parse_grip_uri

TOKEN_LIFETIME_S = 3600


class GripUrlError(ValueError):
    pass


@dataclass(frozen=True)
class HostedGrip:
    publish_url: str
    iss: str | None
    key: bytes | str | None
    verify_iss: str | None
    verify_key: bytes | str | None

    @property
    def name(self) -> str:
        """How logs and metrics name the service: its host and port, never its key."""
        parts = urlsplit(self.publish_url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    def authorization(self) -> str | None:
        """The Authorization header of one publish (a fresh JWT when the URL has `iss`)."""
        if self.key is None:
            return None
        if self.iss:
            claims = {"iss": self.iss, "exp": int(time.time()) + TOKEN_LIFETIME_S}
            return f"Bearer {jwt.encode(claims, self.key, algorithm='HS256')}"
        key = self.key.decode() if isinstance(self.key, bytes) else self.key
        return f"Bearer {key}"

    def verifier(self) -> dict:
        """django-grip's GRIP_PROXIES entry that verifies the service's Grip-Sig."""
        entry = {"control_uri": self.publish_url, "key": self.verify_key or self.key or ""}
        if self.verify_iss:
            entry["verify_iss"] = self.verify_iss
        return entry


def parse(url: str) -> HostedGrip:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GripUrlError(
            "GRIP_URL must be the hosted service's http(s) URL, e.g. "
            "https://api.fanout.io/realm/REALM?iss=REALM&key=base64:KEY"
        )
    config = parse_grip_uri(url)
    return HostedGrip(
        publish_url=config["control_uri"].split("?", 1)[0] + "/publish/",
        iss=config.get("control_iss"),
        key=config.get("key"),
        verify_iss=config.get("verify_iss"),
        verify_key=config.get("verify_key"),
    )
