"""Every API call's store queries get a deadline, and stop when the client leaves;
and HEAD is answered on every GET route (:class:`HeadAsGetMiddleware`); a body
over the limit gets a JSON 413 (:class:`JsonTooLargeMiddleware`).

An ASGI middleware (not a FastAPI dependency) so that it wraps the whole call,
routes, dependencies and error handlers alike. The guard travels to the sync
routes' worker threads in the copied context (see ``talprov.store.guard``).

Leaving is seen for calls without a request body (GET, HEAD, DELETE): their body
is read up front, after which the server's next ``receive`` only ever answers
``http.disconnect``; a task waits for it and cancels the guard, which interrupts
the running query (SQLite) or sends PostgreSQL a cancel request. Calls with a
body hand ``receive`` to the route and rely on the deadline alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from talprov.store.guard import QueryGuard, guarded

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_BODILESS = frozenset({"GET", "HEAD", "DELETE"})


class QueryGuardMiddleware:
    """Run each HTTP call under a :class:`QueryGuard` of ``seconds``."""

    def __init__(self, app: Asgi, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive,
                       send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = QueryGuard(self.seconds)
        with guarded(guard):
            if scope.get("method") in _BODILESS:
                await self._watching_disconnect(scope, receive, send, guard)
            else:
                await self.app(scope, receive, send)

    async def _watching_disconnect(self, scope: MutableMapping[str, Any], receive: Receive,
                                   send: Send, guard: QueryGuard) -> None:
        body: list[Message] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before we started: nothing to answer
            body.append(message)
            if not message.get("more_body", False):
                break
        gone = asyncio.Event()
        answered = False

        async def wait_for_disconnect() -> None:
            message = await receive()
            if message["type"] == "http.disconnect" and not answered:
                log.info("client left %s %s before the answer; stopping its store queries",
                         scope.get("method"), scope.get("path"))
                guard.cancel()
            gone.set()

        async def replay() -> Message:
            if body:
                return body.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        async def sending(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        watcher = asyncio.create_task(wait_for_disconnect())
        try:
            await self.app(scope, replay, sending)
        finally:
            watcher.cancel()


class HeadAsGetMiddleware:
    """Answers HEAD on every route as GET without the body (RFC 9110, 9.3.2): the
    same status and headers, ``Content-Length`` included. FastAPI's routes take
    only the methods they name, so without this a HEAD got 405 everywhere but
    on the routes that listed it."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive,
                       send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


class JsonTooLargeMiddleware:
    """Turns the body limit's 413 into the API's error body, ``{"detail": ...}``
    naming the limit. Starlette's limiter answers with plain text, from outside
    every handler and user middleware, so this wraps the whole application
    (see ``TalprovApi.build_middleware_stack``). The answered body is replaced
    whatever it was: the API has no other 413."""

    def __init__(self, app: Asgi, max_body_bytes: int | None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive,
                       send: Send) -> None:
        if scope["type"] != "http" or self.max_body_bytes is None:
            await self.app(scope, receive, send)
            return
        replaced = False
        body = json.dumps({"detail": f"request body larger than {self.max_body_bytes} bytes "
                                     "(the service's max_body_bytes)"}).encode()

        async def sending(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message.get("status") == 413:
                replaced = True
                headers = [(b"content-type", b"application/json"),
                           (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 413, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
            elif not replaced:
                await send(message)

        await self.app(scope, receive, sending)
