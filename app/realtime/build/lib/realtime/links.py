"""The `es-meta` token of a stream's next link, checked before django-eventstream reads it.

django-eventstream gives Pushpin a next link (followed for every page of a replay and at every
refresh) that carries `es-meta`: a JWT, signed with SECRET_KEY, naming the stream's channels and
user. Any client can put `es-meta` in its own URL, and django-eventstream answers a malformed
one with a 500 and a deleted user with a 500; it also keeps streaming to a user who has since
been deactivated. Here every token is decoded and checked first: malformed, expired or
tampered tokens get a 400; a user who is gone or inactive, or who lost a channel, gets the
stream ended with a `stream-error`. Tokens signed with a key in SECRET_KEY_FALLBACKS (a key
rotation in progress) are re-signed with the current key, which django-eventstream expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from django.conf import settings

from . import channels

MAX_TOKEN_LENGTH = 2048


class LinkError(ValueError):
    """A malformed, expired or forged link token (HTTP 400)."""


@dataclass(frozen=True)
class Link:
    channels: list[str]
    user: str  # "anonymous" or the user's primary key, as django-eventstream writes it
    resigned: str | None  # the token signed with the current key, when a fallback key signed it


def decode(token: str) -> Link:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LinkError("invalid es-meta: empty or too long")
    meta, current = _verified(token)
    names, user = meta.get("channels"), meta.get("user")
    if (
        not isinstance(names, list)
        or not 1 <= len(names) <= channels.MAX_CHANNELS
        or not all(isinstance(n, str) for n in names)
        or not isinstance(user, str | int)
    ):
        raise LinkError("invalid es-meta: unexpected content")
    for name in names:
        try:
            channels.validate(name)
        except channels.ChannelError as exc:
            raise LinkError(f"invalid es-meta: {exc}") from None
    resigned = None
    if not current:
        resigned = jwt.encode(meta, settings.SECRET_KEY.encode(), algorithm="HS256")
    return Link(names, str(user), resigned)


def _verified(token: str) -> tuple[dict, bool]:
    """The token's claims, and whether the current key (not a fallback) signed it."""
    for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        try:
            meta = jwt.decode(
                token, key.encode(), algorithms=["HS256"], options={"require": ["exp"]}
            )
        except jwt.ExpiredSignatureError:
            raise LinkError("invalid es-meta: expired") from None
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise LinkError("invalid es-meta: not a valid token") from None
        return meta, key == settings.SECRET_KEY
    raise LinkError("invalid es-meta: not signed by this site")


def user_of(link: Link):
    """The link's user if still allowed to stream (None for anonymous); raises PermissionError
    when that user was deleted or deactivated since the stream opened."""
    if link.user == "anonymous":
        return None
    from django.contrib.auth import get_user_model

    model = get_user_model()
    try:
        user = model.objects.get(pk=link.user)
    except (model.DoesNotExist, ValueError, TypeError):
        raise PermissionError("the stream's user no longer exists") from None
    if not user.is_active:
        raise PermissionError("the stream's user is no longer active")
    return user
