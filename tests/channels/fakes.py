"""Local stand-ins for WeCom, DingTalk, Feishu and an SMTP relay.

Each HTTP fake listens on 127.0.0.1 (random port) in a thread, records every
request, checks it against the platform's documented format (method, path,
query, headers, JSON body shape and the signature, recomputed here) and
answers with the documented success or error body. A check that fails is
written to ``problems`` and answered with the platform's own error code, so a
test sees both what the client did wrong and how the client took the answer.
Faults (an HTTP 503, a slow answer) are scripted with :meth:`fail_next`.

The SMTP fake speaks enough of RFC 5321 for smtplib: EHLO, STARTTLS (always
refused, 454), AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import socketserver
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from waggle.core.clock import now

Answer = tuple[int, dict[str, Any]]


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    raw_query: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    """A scripted misbehaviour for the next request: a status, or a slow answer."""

    status: int = 503
    delay_seconds: float = 0.0


class FakePlatform:
    """A JSON HTTP server on loopback; subclasses implement :meth:`answer`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self.faults: deque[Fault] = deque()
        self.scripted: deque[dict[str, Any]] = deque()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, *faults: Fault) -> None:
        """Misbehave on the next requests, one fault each, in order."""
        self.faults.extend(faults)

    def answer_next(self, *answers: dict[str, Any]) -> None:
        """Answer the next well-formed requests with these bodies instead."""
        self.scripted.extend(answers)

    def answer(self, request: Recorded) -> Answer:
        raise NotImplementedError

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def _dispatch(self, request: Recorded) -> tuple[Answer, float]:
        self.requests.append(request)
        if self.faults:
            fault = self.faults.popleft()
            if fault.delay_seconds:
                return self.answer(request), fault.delay_seconds
            return (fault.status, {"error": "scripted fault"}), 0.0
        status, body = self.answer(request)
        if self.scripted and status == 200 and not self._answered_error(body):
            return (200, self.scripted.popleft()), 0.0
        return (status, body), 0.0

    def _answered_error(self, body: dict[str, Any]) -> bool:
        return bool(body.get("errcode") or body.get("code"))

    def check_json_post(self, request: Recorded) -> bool:
        """Check the method, content type and JSON object body of a POST."""
        if request.method != "POST":
            self.problem(f"{request.path}: method {request.method}, expected POST")
            return False
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/json"):
            self.problem(f"{request.path}: content-type {content_type!r}")
            return False
        if not isinstance(request.body, dict):
            self.problem(f"{request.path}: body is not a JSON object")
            return False
        return True

    def check_query_keys(self, request: Recorded, expected: set[str]) -> bool:
        if set(request.query) != expected:
            self.problem(f"{request.path}: query keys {sorted(request.query)}")
            return False
        return True

    @contextmanager
    def running(self) -> Iterator[FakePlatform]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _handler_for(platform: FakePlatform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    body = raw
            request = Recorded(
                method=self.command,
                path=parts.path,
                raw_query=parts.query,
                query=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            (status, answer), delay = platform._dispatch(request)
            if delay:
                time.sleep(delay)
            data = json.dumps(answer, ensure_ascii=False).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout tests)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _one(request: Recorded, key: str) -> str:
    values = request.query.get(key) or [""]
    return values[0]


# ------------------------------------------------------------------- WeCom


class FakeWeCom(FakePlatform):
    """gettoken, message/send (application messages) and webhook/send (robots)."""

    def __init__(
        self,
        *,
        corp_id: str = "ww1234567890abcdef",
        corp_secret: str = "app-secret-0001",
        agent_id: int = 1000002,
        members: tuple[str, ...] = ("zhangsan", "lisi"),
        robot_key: str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa",
        expires_in: int = 7200,
    ) -> None:
        super().__init__()
        self.corp_id, self.corp_secret, self.agent_id = corp_id, corp_secret, agent_id
        self.members = set(members)
        self.robot_key = robot_key
        self.expires_in = expires_in
        self.valid_tokens: set[str] = set()
        self.expired_tokens: set[str] = set()
        self.token_requests = 0
        self.sent: list[dict[str, Any]] = []

    def expire_tokens(self) -> None:
        """Make every issued token answer 42001 from now on (early invalidation)."""
        self.expired_tokens |= self.valid_tokens
        self.valid_tokens.clear()

    def answer(self, request: Recorded) -> Answer:
        routes: dict[str, Callable[[Recorded], Answer]] = {
            "/cgi-bin/gettoken": self._gettoken,
            "/cgi-bin/message/send": self._message_send,
            "/cgi-bin/webhook/send": self._webhook_send,
        }
        route = routes.get(request.path)
        if route is None:
            self.problem(f"unknown path {request.path}")
            return 404, {"errcode": 404, "errmsg": "not found"}
        return route(request)

    def _gettoken(self, request: Recorded) -> Answer:
        if request.method != "GET" or not self.check_query_keys(
            request, {"corpid", "corpsecret"}
        ):
            return 200, {"errcode": 40035, "errmsg": "invalid parameter"}
        self.token_requests += 1
        if _one(request, "corpid") != self.corp_id:
            return 200, {"errcode": 40013, "errmsg": "invalid corpid"}
        if _one(request, "corpsecret") != self.corp_secret:
            return 200, {"errcode": 40001, "errmsg": "invalid credential"}
        token = f"accesstoken{self.token_requests:06d}"
        self.valid_tokens.add(token)
        return 200, {
            "errcode": 0,
            "errmsg": "ok",
            "access_token": token,
            "expires_in": self.expires_in,
        }

    def _message_send(self, request: Recorded) -> Answer:
        if not self.check_json_post(request) or not self.check_query_keys(
            request, {"access_token"}
        ):
            return 200, {"errcode": 40035, "errmsg": "invalid parameter"}
        token = _one(request, "access_token")
        if token in self.expired_tokens:
            return 200, {"errcode": 42001, "errmsg": "access_token expired"}
        if token not in self.valid_tokens:
            return 200, {"errcode": 40014, "errmsg": "invalid access_token"}
        body = request.body
        if not self._application_body_ok(body):
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        if body["touser"] not in self.members:
            return 200, {"errcode": 81013, "errmsg": "user & party & tag all invalid"}
        self.sent.append(body)
        return 200, {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "",
            "msgid": f"msgid-{len(self.sent)}",
        }

    def _application_body_ok(self, body: dict[str, Any]) -> bool:
        required = {
            "text": {"content"},
            "markdown": {"content"},
            "textcard": {"title", "description", "url"},
        }
        msgtype = body.get("msgtype")
        problems = []
        if not isinstance(body.get("touser"), str):
            problems.append("touser is not a string")
        if body.get("agentid") != self.agent_id:
            problems.append(f"agentid {body.get('agentid')!r}")
        if msgtype not in required:
            problems.append(f"msgtype {msgtype!r}")
        elif not required[msgtype] <= set(body.get(msgtype) or {}):
            problems.append(f"{msgtype} lacks {sorted(required[msgtype])}")
        extra = set(body) - {"touser", "agentid", "msgtype", str(msgtype), "safe"}
        if extra:
            problems.append(f"unexpected keys {sorted(extra)}")
        for text in problems:
            self.problem(f"message/send: {text}")
        return not problems

    def _webhook_send(self, request: Recorded) -> Answer:
        if not self.check_json_post(request) or not self.check_query_keys(
            request, {"key"}
        ):
            return 200, {"errcode": 40035, "errmsg": "invalid parameter"}
        if _one(request, "key") != self.robot_key:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        body = request.body
        msgtype = body.get("msgtype")
        if msgtype not in {"text", "markdown"} or not isinstance(
            (body.get(msgtype) or {}).get("content"), str
        ):
            self.problem(f"webhook/send: bad body {body!r}")
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        self.sent.append(body)
        return 200, {"errcode": 0, "errmsg": "ok"}


# ---------------------------------------------------------------- DingTalk


def dingtalk_sign(timestamp_ms: str, secret: str) -> str:
    """Recompute DingTalk's signature from the documented recipe."""
    mac = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    )
    return base64.b64encode(mac.digest()).decode("ascii")


class FakeDingTalk(FakePlatform):
    """The custom robot's ``/robot/send`` with 加签 checked."""

    def __init__(
        self,
        *,
        access_token: str = "d5b6c0ffee" * 6 + "abcd",
        secret: str | None = "SEC3a0e1b2c3d4e5f60718293a4b5c6d7e8f9",
        clock_skew_seconds: int = 0,
    ) -> None:
        super().__init__()
        self.access_token = access_token
        self.secret = secret
        self.clock_skew_seconds = clock_skew_seconds
        self.sent: list[dict[str, Any]] = []

    def answer(self, request: Recorded) -> Answer:
        if request.path != "/robot/send":
            self.problem(f"unknown path {request.path}")
            return 404, {"errcode": 404, "errmsg": "not found"}
        expected = (
            {"access_token", "timestamp", "sign"} if self.secret else {"access_token"}
        )
        if not self.check_json_post(request) or not self.check_query_keys(
            request, expected
        ):
            return 200, {"errcode": 400, "errmsg": "bad request"}
        if _one(request, "access_token") != self.access_token:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        if self.secret and not self._signature_ok(request):
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        if not self._body_ok(request.body):
            return 200, {"errcode": 40035, "errmsg": "缺少参数 json"}
        self.sent.append(request.body)
        return 200, {"errcode": 0, "errmsg": "ok"}

    def _signature_ok(self, request: Recorded) -> bool:
        assert self.secret is not None
        timestamp = _one(request, "timestamp")
        if not timestamp.isdigit():
            self.problem(f"timestamp {timestamp!r} is not milliseconds")
            return False
        platform_ms = int((now().timestamp() + self.clock_skew_seconds) * 1000)
        if abs(int(timestamp) - platform_ms) > 3600 * 1000:
            self.problem("timestamp more than an hour off")
            return False
        expected = dingtalk_sign(timestamp, self.secret)
        if _one(request, "sign") != expected:
            self.problem("sign does not match")
            return False
        # The sign must travel URL-encoded: base64's '+', '/', '=' escaped.
        raw = dict(part.split("=", 1) for part in request.raw_query.split("&"))
        raw_sign = raw["sign"]
        if raw_sign != urllib.parse.quote_plus(expected):
            self.problem(f"sign not URL-encoded: {raw_sign!r}")
            return False
        return True

    def _body_ok(self, body: dict[str, Any]) -> bool:
        required = {
            "text": {"content"},
            "markdown": {"title", "text"},
            "actionCard": {"title", "text", "singleTitle", "singleURL"},
        }
        msgtype = body.get("msgtype")
        ok = msgtype in required and required[msgtype] <= set(body.get(msgtype) or {})
        at = body.get("at")
        if at is not None and not isinstance(at.get("atMobiles", []), list):
            ok = False
        if not ok:
            self.problem(f"robot/send: bad body {body!r}")
        return ok


# ------------------------------------------------------------------ Feishu


def feishu_sign(timestamp: str, secret: str) -> str:
    """Recompute Feishu's signature: key timestamp+LF+secret, empty message."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FakeFeishu(FakePlatform):
    """The custom bot's ``/open-apis/bot/v2/hook/<token>`` with 签名校验 checked."""

    def __init__(
        self,
        *,
        hook_token: str = "a1b2c3d4-0000-4f4f-9e9e-feedfacecafe",
        secret: str | None = "feishu-bot-secret-0001",
    ) -> None:
        super().__init__()
        self.hook_token = hook_token
        self.secret = secret
        self.sent: list[dict[str, Any]] = []

    def answer(self, request: Recorded) -> Answer:
        prefix = "/open-apis/bot/v2/hook/"
        if not request.path.startswith(prefix):
            self.problem(f"unknown path {request.path}")
            return 404, {"code": 404, "msg": "not found"}
        if not self.check_json_post(request) or request.query:
            return 200, {"code": 9499, "msg": "Bad Request", "data": {}}
        if request.path[len(prefix) :] != self.hook_token:
            return 200, {
                "code": 19001,
                "msg": "param invalid: incoming webhook access token invalid",
                "data": {},
            }
        if self.secret and not self._signature_ok(request.body):
            return 200, {
                "code": 19021,
                "msg": "sign match fail or timestamp is not within one hour "
                "from current time",
                "data": {},
            }
        if not self._body_ok(request.body):
            return 200, {"code": 9499, "msg": "Bad Request", "data": {}}
        self.sent.append(request.body)
        return 200, {
            "code": 0,
            "msg": "success",
            "data": {},
            "Extra": None,
            "StatusCode": 0,
            "StatusMessage": "success",
        }

    def _signature_ok(self, body: dict[str, Any]) -> bool:
        assert self.secret is not None
        timestamp = body.get("timestamp")
        if not isinstance(timestamp, str) or not timestamp.isdigit():
            self.problem(f"timestamp {timestamp!r} is not a string of seconds")
            return False
        if abs(int(timestamp) - int(now().timestamp())) > 3600:
            self.problem("timestamp more than an hour off")
            return False
        if body.get("sign") != feishu_sign(timestamp, self.secret):
            self.problem("sign does not match")
            return False
        return True

    def _body_ok(self, body: dict[str, Any]) -> bool:
        msg_type = body.get("msg_type")
        content = body.get("content") or {}
        if msg_type == "text":
            ok = isinstance(content.get("text"), str)
        elif msg_type == "post":
            post = content.get("post") or {}
            ok = bool(post) and set(post) <= {"zh_cn", "en_us", "ja_jp"}
            ok = ok and all(
                isinstance(part.get("title"), str)
                and all(
                    isinstance(line, list) and all("tag" in item for item in line)
                    for line in part.get("content", [])
                )
                for part in post.values()
            )
        elif msg_type == "interactive":
            ok = isinstance(body.get("card"), dict) and "elements" in body["card"]
        else:
            ok = False
        if not ok:
            self.problem(f"hook: bad body {body!r}")
        return ok


# -------------------------------------------------------------------- SMTP


@dataclass
class Envelope:
    """One mail the SMTP fake accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        # Local delivery turns the wire's CRLF line ends into LF, as here.
        local = self.data.replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(local, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def raw_header(self, name: str) -> str:
        """Return the header as it travelled (still RFC 2047 encoded)."""
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
        unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ")
        for line in unfolded.split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        raise KeyError(name)


@dataclass
class FakeSmtp:
    """A small SMTP responder on loopback recording envelopes and commands."""

    username: str | None = None
    password: str | None = None
    rejected: set[str] = field(default_factory=set)
    transient_data_failures: int = 0
    envelopes: list[Envelope] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    port: int = 0

    @contextmanager
    def running(self) -> Iterator[FakeSmtp]:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _smtp_handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _smtp_handler(fake: FakeSmtp) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.reply("220 fake.local ESMTP ready")
            session = _SmtpSession(fake)
            while line := self.rfile.readline():
                command = line.decode("utf-8").rstrip("\r\n")
                fake.commands.append(command.split(" ", 1)[0].upper())
                if command.upper() == "DATA" and session.ready_for_data():
                    self.reply("354 end data with <CR><LF>.<CR><LF>")
                    self.reply(session.finish(self._read_data()))
                    continue
                answer = session.respond(command)
                self.reply(answer)
                if answer.startswith("221"):
                    return

        def _read_data(self) -> bytes:
            lines = []
            while (line := self.rfile.readline()) not in (b".\r\n", b""):
                lines.append(line[1:] if line.startswith(b"..") else line)
            return b"".join(lines)

        def reply(self, text: str) -> None:
            self.wfile.write(text.encode("utf-8") + b"\r\n")

    return Handler


class _SmtpSession:
    def __init__(self, fake: FakeSmtp):
        self.fake = fake
        self.mail_from: str | None = None
        self.rcpt_tos: list[str] = []

    def ready_for_data(self) -> bool:
        return self.mail_from is not None and bool(self.rcpt_tos)

    def respond(self, command: str) -> str:
        verb, _, argument = command.partition(" ")
        verb = verb.upper()
        if verb == "EHLO":
            features = ["fake.local", "8BITMIME", "STARTTLS"]
            if self.fake.username:
                features.append("AUTH PLAIN")
            lines = [f"250-{f}" for f in features[:-1]] + [f"250 {features[-1]}"]
            return "\r\n".join(lines)
        if verb == "STARTTLS":
            return "454 4.7.0 TLS not available"
        if verb == "AUTH":
            return self._auth(argument)
        if verb == "MAIL":
            self.mail_from = _angle(argument)
            return "250 2.1.0 OK"
        if verb == "RCPT":
            address = _angle(argument)
            if address in self.fake.rejected:
                return "550 5.1.1 mailbox unavailable"
            self.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        if verb in {"RSET", "NOOP"}:
            self.mail_from, self.rcpt_tos = None, []
            return "250 OK"
        if verb == "QUIT":
            return "221 bye"
        return "502 5.5.2 command not recognised"

    def _auth(self, argument: str) -> str:
        mechanism, _, initial = argument.partition(" ")
        if mechanism.upper() != "PLAIN" or not initial:
            return "504 5.5.4 mechanism not supported"
        _, user, secret = base64.b64decode(initial).decode("utf-8").split("\0")
        if (user, secret) == (self.fake.username, self.fake.password):
            return "235 2.7.0 authenticated"
        return "535 5.7.8 authentication failed"

    def finish(self, data: bytes) -> str:
        if self.fake.transient_data_failures > 0:
            self.fake.transient_data_failures -= 1
            return "451 4.3.0 try again later"
        assert self.mail_from is not None
        self.fake.envelopes.append(Envelope(self.mail_from, self.rcpt_tos, data))
        self.mail_from, self.rcpt_tos = None, []
        return "250 2.0.0 queued"


def _angle(argument: str) -> str:
    start, end = argument.find("<"), argument.find(">")
    return argument[start + 1 : end]


PlatformT = TypeVar("PlatformT", bound=FakePlatform)


@contextmanager
def serving(platform: PlatformT) -> Iterator[PlatformT]:
    """Run ``platform`` for the duration of the block."""
    with platform.running():
        yield platform
