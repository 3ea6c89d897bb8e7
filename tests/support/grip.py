"""GRIP request signatures (Grip-Sig), as a Pushpin node signs the requests it passes on."""

from __future__ import annotations

import time

import jwt


def grip_sig(key: str | None, algorithm: str = "HS256", **claims) -> str:
    """A Grip-Sig value: an HS256 JWT issued by "pushpin", valid for 60 s (claims override)."""
    return jwt.encode(
        {"iss": "pushpin", "exp": int(time.time()) + 60, **claims}, key, algorithm=algorithm
    )
