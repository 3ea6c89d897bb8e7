"""uvicorn entry point for the ASGI comparison: Django (django-eventstream streams served by this
process) plus /bench/publish, which publishes a timed sequence from inside this process (events
reach only this process's listeners without Redis) and /bench/health."""

import asyncio
import json
import time
from urllib.parse import parse_qs

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from django_eventstream import send_event  # noqa: E402


async def respond(send, status, body):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def publish(query):
    channel = query["channel"][0]
    rate, count = float(query["rate"][0]), int(query["count"][0])
    send = sync_to_async(send_event, thread_sensitive=False)
    started, latency = time.monotonic(), []
    for seq in range(1, count + 1):
        due = started + (seq - 1) / rate
        await asyncio.sleep(max(0, due - time.monotonic()))
        sent_at = time.time()
        await send(channel, "seq", json.dumps({"seq": seq, "sent_at": sent_at}), json_encode=False)
        latency.append(time.time() - sent_at)
    latency.sort()
    return {
        "published": count,
        "rate": round(count / (time.monotonic() - started), 2),
        "call_latency_s": {
            "p50": latency[len(latency) // 2],
            "p99": latency[int(len(latency) * 0.99)],
        },
    }


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/bench/health":
        return await respond(send, 200, {"status": "ok"})
    if scope["type"] == "http" and scope["path"] == "/bench/publish":
        return await respond(send, 200, await publish(parse_qs(scope["query_string"].decode())))
    return await django_app(scope, receive, send)
