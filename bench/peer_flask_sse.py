"""flask-sse as a benchmark peer: its blueprint at /stream and one publish endpoint, nothing else.

    gunicorn -k gevent -w 2 --worker-connections 12000 bench.peer_flask_sse:app

`python -m bench.versus` runs it under the same gunicorn settings as Weigh-in, against the same
Redis, and drives it with the same clients: each client follows `/stream?channel=<prefix>user.<id>`
and `POST /publish` (form fields `user` and `id`) calls `sse.publish` with a banner naming the
reminder id, as Weigh-in's stream does. `PEER_REDIS_URL` is the Redis, `PEER_PREFIX` starts every
channel name, so runs sharing a Redis never hear each other. Benchmark-only: nothing in webapp/
imports flask-sse (requirements-dev.txt).
"""

from __future__ import annotations

import json
import os

from flask import Flask, Response, request, stream_with_context
from flask_sse import Message, sse  # type: ignore[import-untyped]

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("PEER_PREFIX", "peer.")
app.register_blueprint(sse, url_prefix="/stream")


@app.get("/stream/open")
def stream_open():
    """flask-sse's stream with one addition: a first chunk once subscribed, as Weigh-in sends one.

    The blueprint's own `/stream` writes nothing (not even the status line, under gunicorn) until
    the first event, so neither a browser nor the benchmark could tell it had connected. This is
    its `messages()` with a comment line between the subscription and the first message: the same
    Redis client (`sse.redis`), one pubsub connection per stream, and its `Message` format.
    """
    channel = request.args["channel"]

    def generate():
        pubsub = sse.redis.pubsub()
        pubsub.subscribe(channel)
        try:
            yield ": subscribed\n\n"
            for item in pubsub.listen():
                if item["type"] == "message":
                    yield str(Message(**json.loads(item["data"])))
        finally:
            pubsub.close()

    return Response(stream_with_context(generate()), mimetype="text/event-stream")


@app.post("/publish")
def publish():
    """Publish one banner for one user: the same event as Weigh-in's "Remind now" produces."""
    user, reminder = int(request.form["user"]), int(request.form["id"])
    banner = f'<div class="reminder-banner" data-reminder-id="{reminder}" data-user="{user}">Time to weigh in</div>'
    sse.publish({"html": banner}, id=reminder, channel=f"{PREFIX}user.{user}")
    return "published"
