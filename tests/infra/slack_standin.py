"""A STAND-IN for Slack's Web API: Slack cannot be reached from here, so this local server answers
in its place.

Used by tests/infra/slack.py (fixture `slack_api`); the bot under test reaches it through
SLACK_API_URL. It speaks Slack's wire format for the methods the bot uses: form-encoded or JSON
bodies, `Authorization: Bearer xoxb-...` (or a `token` parameter), `{"ok": ...}` answers with
Slack's error codes, 429 with Retry-After. It records every call and keeps the messages it was
sent, per channel and thread, for tests to assert on. Deliberately stricter than Slack in one
place: a reply to a `thread_ts` that names no message answers `thread_not_found`. It has no
Socket Mode (WebSocket) server: apps.connections.open refuses every token.

Views: views.open and views.update keep each modal by its id, views.publish each person's App
Home; every view carries a `hash` that changes with each update, and an update or publish
naming an older one answers `hash_conflict`, as Slack does.

Also served: upload URLs of files.getUploadURLExternal (`/upload/v1/<file_id>`), and
`response_url`s (`/commands/<id>`) that slash-command and button requests built by
tests/infra/slack_requests.py point at, so a bot's `respond()` lands here too.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TEAM_ID = "T0STANDIN1"
TEAM_NAME = "Stand-in Workspace"
BOT_USER_ID = "U0RELBOT01"
BOT_USER_NAME = "release-bot"
BOT_ID = "B0RELBOT01"
APP_ID = "A0RELBOT01"
WORKSPACE_URL = "https://standin.slack.test/"

CONVERSATION_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
JSON_ENCODED_PARAMS = ("blocks", "attachments", "view", "files", "metadata")
ALT_TEXT_MAX = 1000

Params = dict[str, Any]
Answer = dict[str, Any]


class SlackError(Exception):
    """Answered as `{"ok": false, "error": code}` with HTTP 200, as Slack does."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class RecordedCall:
    """One request the stand-in answered. `at` is time.monotonic() when it arrived."""

    method: str
    params: Params
    at: float
    http_status: int
    answer: Answer

    @property
    def ok(self) -> bool:
        return bool(self.answer.get("ok"))


@dataclass
class Fault:
    """A scripted answer for the next call(s) of one method, used instead of the real one."""

    http_status: int
    answer: Answer
    retry_after_s: int | None = None


@dataclass
class _Upload:
    """A file between files.getUploadURLExternal and files.completeUploadExternal."""

    filename: str
    length: int
    alt_txt: str | None
    data: bytes | None = None


@dataclass
class _State:
    calls: list[RecordedCall] = field(default_factory=list)
    faults: defaultdict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    messages: defaultdict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    ephemerals: defaultdict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    views: list[dict[str, Any]] = field(default_factory=list)
    home_views: defaultdict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    channel_members: dict[str, list[str]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, _Upload] = field(default_factory=dict)
    uploads_started: int = 0
    shared_files: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)


class SlackStandIn:
    """The stand-in server; `start()` it, point SLACK_API_URL at `api_url`, `close()` it."""

    def __init__(self, *, bot_token: str) -> None:
        self.bot_token = bot_token
        self._lock = threading.Lock()
        self._state = _State()
        self._last_ts_micros = 0
        self._server: ThreadingHTTPServer | None = None
        self._methods: dict[str, Callable[[Params], Answer]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "conversations.members": self._conversations_members,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
        }

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> SlackStandIn:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, name="slack-standin", daemon=True
        ).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL should be: the stand-in's equivalent of https://slack.com/api/."""
        return f"{self.base_url}/api/"

    @property
    def response_url_base(self) -> str:
        return f"{self.base_url}/commands/"

    # ---- test controls ---------------------------------------------------------------------

    def reset(self) -> None:
        """Forget calls, messages, faults and added users/groups/channels: a clean workspace."""
        with self._lock:
            self._state = _State()

    def rate_limit_next(self, method: str, *, times: int = 1, retry_after_s: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and `Retry-After`."""
        fault = Fault(429, {"ok": False, "error": "ratelimited"}, retry_after_s)
        self._add_faults(method, fault, times)

    def fail_next(self, method: str, *, error: str, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with `{"ok": false, "error": error}`."""
        self._add_faults(method, Fault(200, {"ok": False, "error": error}), times)

    def _add_faults(self, method: str, fault: Fault, times: int) -> None:
        if method not in self._methods:
            raise ValueError(f"the stand-in does not implement {method!r}")
        with self._lock:
            self._state.faults[method].extend([fault] * times)

    def add_user(self, user_id: str, *, name: str, real_name: str = "", tz: str = "UTC") -> None:
        with self._lock:
            self._state.users[user_id] = _user(user_id, name=name, real_name=real_name, tz=tz)

    def add_usergroup(self, usergroup_id: str, *, user_ids: list[str]) -> None:
        with self._lock:
            self._state.usergroups[usergroup_id] = list(user_ids)

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str,
        is_private: bool = False,
        members: list[str] | None = None,
    ) -> None:
        """A channel conversations.info describes and, with `members`, conversations.members
        lists (a channel never added is unknown to conversations.members: channel_not_found)."""
        with self._lock:
            self._state.channels[channel_id] = _channel(channel_id, name, is_private)
            self._state.channel_members[channel_id] = list(members or [])

    # ---- what happened ---------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._state.calls if method is None or c.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages of `channel`, oldest first, as they are now (after updates)."""
        with self._lock:
            return [dict(m) for m in self._state.messages[channel] if "thread_ts" not in m]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies under the message `thread_ts` of `channel`, oldest first (parent excluded)."""
        with self._lock:
            return [
                dict(m) for m in self._state.messages[channel] if m.get("thread_ts") == thread_ts
            ]

    def ephemerals(self, channel: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._state.ephemerals[channel]]

    def opened_views(self) -> list[dict[str, Any]]:
        """Modals opened with views.open, as they are now (after views.update)."""
        with self._lock:
            return [dict(view) for view in self._state.views]

    def published_home_views(self, user: str) -> list[dict[str, Any]]:
        """Every App Home view published for `user`, oldest first."""
        with self._lock:
            return [dict(view) for view in self._state.home_views[user]]

    def responses(self) -> list[dict[str, Any]]:
        """Bodies POSTed to response_urls, oldest first, each with its `response_url_id`."""
        with self._lock:
            return list(self._state.responses)

    def shared_files(self) -> list[dict[str, Any]]:
        """Files shared by files.completeUploadExternal, oldest first, each with its bytes
        (`content`), `name`, `alt_txt`, `channel` and `thread_ts`."""
        with self._lock:
            return list(self._state.shared_files)

    # ---- HTTP entry points (called by the request handler) ---------------------------------

    def answer_api(
        self, method: str, params: Params, token: str | None
    ) -> tuple[int, Answer, int | None]:
        """(HTTP status, JSON answer, Retry-After seconds or None) for one Web API call."""
        arrived = time.monotonic()
        status, answer, retry_after = self._dispatch(method, params, token)
        with self._lock:
            self._state.calls.append(RecordedCall(method, params, arrived, status, answer))
        return status, answer, retry_after

    def _dispatch(
        self, method: str, params: Params, token: str | None
    ) -> tuple[int, Answer, int | None]:
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, None
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, None
        if token != self.bot_token:
            return 200, {"ok": False, "error": "invalid_auth"}, None
        with self._lock:
            faults = self._state.faults[method]
            fault = faults.popleft() if faults else None
        if fault is not None:
            return fault.http_status, dict(fault.answer), fault.retry_after_s
        try:
            return 200, handler(params), None
        except SlackError as error:
            return 200, {"ok": False, "error": error.code}, None

    def accept_upload(self, file_id: str, data: bytes) -> bool:
        """The upload step: a POST of the file's bytes to its upload URL."""
        with self._lock:
            upload = self._state.uploads.get(file_id)
            if upload is None:
                return False
            upload.data = data
            return True

    def accept_response(self, response_url_id: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._state.responses.append({"response_url_id": response_url_id, **body})

    # ---- Web API methods -------------------------------------------------------------------

    def _auth_test(self, params: Params) -> Answer:
        return {
            "ok": True,
            "url": WORKSPACE_URL,
            "team": TEAM_NAME,
            "user": BOT_USER_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: Params) -> Answer:
        channel = _conversation(params)
        _require_content(params)
        thread_ts = params.get("thread_ts") or None
        with self._lock:
            if thread_ts is not None:
                self._require_thread(channel, str(thread_ts))
            message = self._bot_message(params, ts=self._next_ts())
            if thread_ts is not None:
                message["thread_ts"] = str(thread_ts)
            self._state.messages[channel].append(message)
            self._count_reply(channel, message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": dict(message)}

    def _chat_update(self, params: Params) -> Answer:
        channel = _conversation(params)
        ts = str(params.get("ts") or "")
        _require_content(params)
        with self._lock:
            message = self._find_message(channel, ts)
            for key in ("text", "blocks", "attachments", "metadata"):
                if key in params:
                    message[key] = params[key]
            message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
            answer = dict(message)
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": answer.get("text", ""),
            "message": answer,
        }

    def _chat_get_permalink(self, params: Params) -> Answer:
        """Slack's link forms: `<workspace>/archives/<channel>/p<ts without the dot>`, and for a
        reply the same plus `?thread_ts=<parent ts>&cid=<channel>`."""
        channel = _conversation(params)
        with self._lock:
            message = self._find_message(channel, str(params.get("message_ts") or ""))
        permalink = f"{WORKSPACE_URL}archives/{channel}/p{message['ts'].replace('.', '')}"
        if "thread_ts" in message:
            permalink += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": permalink}

    def _chat_post_ephemeral(self, params: Params) -> Answer:
        channel = _conversation(params)
        user = str(params.get("user") or "")
        if not USER_ID.match(user):
            raise SlackError("user_not_found")
        _require_content(params)
        with self._lock:
            message = self._bot_message(params, ts=self._next_ts()) | {"ephemeral_for": user}
            self._state.ephemerals[channel].append(message)
        return {"ok": True, "message_ts": message["ts"]}

    def _views_open(self, params: Params) -> Answer:
        if not params.get("trigger_id"):
            raise SlackError("invalid_arguments")
        view = _view_param(params, {"modal"})
        with self._lock:
            opened = self._stored_view(view, view_id=f"V{len(self._state.views) + 1:09d}")
            self._state.views.append(opened)
        return {"ok": True, "view": dict(opened)}

    def _views_update(self, params: Params) -> Answer:
        """Slack's views.update: `view_id` (or `external_id`), the new `view`, and an optional
        `hash` that must be the view's current one."""
        view = _view_param(params, {"modal"})
        with self._lock:
            index = self._view_index(params)
            current = self._state.views[index]
            if params.get("hash") and params["hash"] != current["hash"]:
                raise SlackError("hash_conflict")
            updated = self._stored_view(view, view_id=current["id"], previous=current)
            self._state.views[index] = updated
        return {"ok": True, "view": dict(updated)}

    def _views_publish(self, params: Params) -> Answer:
        """Slack's views.publish: `user_id`, a `home` view, an optional `hash` of the view it
        replaces; an unknown user answers not_found."""
        user = str(params.get("user_id") or "")
        if not user:
            raise SlackError("invalid_arguments")
        view = _view_param(params, {"home"})
        with self._lock:
            known = self._state.users.get(user)
            if not USER_ID.match(user) or (known is not None and known["deleted"]):
                raise SlackError("not_found")
            history = self._state.home_views[user]
            current = history[-1] if history else None
            if params.get("hash") and (current is None or params["hash"] != current["hash"]):
                raise SlackError("hash_conflict")
            view_id = current["id"] if current else f"VH{len(self._state.home_views):08d}"
            published = self._stored_view(view, view_id=view_id, previous=current)
            history.append(published)
        return {"ok": True, "view": dict(published)}

    def _users_info(self, params: Params) -> Answer:
        user_id = str(params.get("user") or "")
        with self._lock:
            known = self._state.users.get(user_id)
        if known is None and not USER_ID.match(user_id):
            raise SlackError("user_not_found")
        return {"ok": True, "user": known or _user(user_id, name=user_id.lower())}

    def _usergroups_users_list(self, params: Params) -> Answer:
        with self._lock:
            users = self._state.usergroups.get(str(params.get("usergroup") or ""))
        if users is None:
            raise SlackError("no_such_subteam")
        return {"ok": True, "users": users}

    def _conversations_info(self, params: Params) -> Answer:
        channel = _conversation(params)
        with self._lock:
            known = self._state.channels.get(channel)
        return {"ok": True, "channel": known or _channel(channel, channel.lower(), False)}

    def _conversations_members(self, params: Params) -> Answer:
        """A page of a channel's member ids; `cursor` is where the last page ended."""
        channel = _conversation(params)
        limit = int(params.get("limit") or 100)
        cursor = str(params.get("cursor") or "")
        with self._lock:
            members = self._state.channel_members.get(channel)
        if members is None:
            raise SlackError("channel_not_found")
        start = int(cursor.removeprefix("next:")) if cursor.startswith("next:") else 0
        page = members[start : start + limit]
        following = f"next:{start + limit}" if start + limit < len(members) else ""
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": following}}

    def _files_get_upload_url(self, params: Params) -> Answer:
        """Slack's step 1: `filename` and `length` (bytes, a positive integer) are required;
        `alt_txt` (at most 1,000 characters) describes an image."""
        filename = str(params.get("filename") or "")
        length = str(params.get("length", ""))
        alt_txt = params.get("alt_txt")
        if not filename or not length.isdigit() or int(length) < 1:
            raise SlackError("invalid_arguments")
        if alt_txt is not None and len(str(alt_txt)) > ALT_TEXT_MAX:
            raise SlackError("invalid_arguments")
        with self._lock:
            self._state.uploads_started += 1
            file_id = f"F{self._state.uploads_started:09d}"
            self._state.uploads[file_id] = _Upload(
                filename=filename,
                length=int(length),
                alt_txt=None if alt_txt is None else str(alt_txt),
            )
        return {
            "ok": True,
            "upload_url": f"{self.base_url}/upload/v1/{file_id}",
            "file_id": file_id,
        }

    def _files_complete_upload(self, params: Params) -> Answer:
        """Slack's step 3: `files` ([{"id", "title"}]) required; shared into `channel_id` (and
        its thread `thread_ts`, which needs the channel), private without one."""
        files = params.get("files")
        if not isinstance(files, list) or not files:
            raise SlackError("invalid_arguments")
        channel = params.get("channel_id")
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None and not channel:
            raise SlackError("invalid_arguments")
        if channel is not None and not CONVERSATION_ID.match(str(channel)):
            raise SlackError("invalid_channel")
        with self._lock:
            if channel is not None and thread_ts is not None:
                self._require_thread(str(channel), str(thread_ts))
            shared = [self._share_file(entry, params) for entry in files]
        return {"ok": True, "files": shared}

    def _apps_connections_open(self, params: Params) -> Answer:
        """Only app-level tokens may open Socket Mode; the stand-in accepts none (no WebSocket)."""
        raise SlackError("not_allowed_token_type")

    # ---- helpers (callers hold the lock) ---------------------------------------------------

    def _share_file(self, entry: dict[str, Any], params: Params) -> dict[str, Any]:
        """Records the shared file with its bytes (`content`) for tests; answers Slack's
        `{"id", "title"}`. A file never uploaded, or whose bytes are not its declared length,
        is not found."""
        file_id = str(entry.get("id", ""))
        upload = self._state.uploads.get(file_id)
        if upload is None or upload.data is None or len(upload.data) != upload.length:
            raise SlackError("file_not_found")
        shared = {
            "id": file_id,
            "title": entry.get("title") or upload.filename,
            "name": upload.filename,
            "alt_txt": upload.alt_txt,
            "size": len(upload.data),
            "content": upload.data,
            "channel": params.get("channel_id"),
            "thread_ts": params.get("thread_ts") or None,
            "initial_comment": params.get("initial_comment"),
        }
        self._state.shared_files.append(shared)
        del self._state.uploads[file_id]  # completed: the upload URL and the id are spent
        return {"id": file_id, "title": shared["title"]}

    def _view_index(self, params: Params) -> int:
        """Where the modal `view_id` (or `external_id`) names is kept; not_found if nowhere."""
        for index, view in enumerate(self._state.views):
            if view["id"] == params.get("view_id"):
                return index
            if params.get("external_id") and view.get("external_id") == params["external_id"]:
                return index
        raise SlackError("not_found")

    def _stored_view(
        self, view: dict[str, Any], *, view_id: str, previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A view as Slack keeps and answers it: its id, a new hash, an empty state, and a
        block_id on every block (Slack makes one up for a block that has none)."""
        blocks = [
            {"block_id": f"b{index}", **block}
            for index, block in enumerate(view.get("blocks") or [])
        ]
        stored = {
            **view,
            "blocks": blocks,
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": {}},
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "root_view_id": (previous or {}).get("root_view_id", view_id),
        }
        revision = f"{time.time_ns()}.{json.dumps(view, sort_keys=True)}"
        stored["hash"] = f"{int(time.time())}.{hashlib.sha1(revision.encode()).hexdigest()[:8]}"
        return stored

    def _find_message(self, channel: str, ts: str) -> dict[str, Any]:
        for message in self._state.messages[channel]:
            if message["ts"] == ts:
                return message
        raise SlackError("message_not_found" if ts else "invalid_arguments")

    def _require_thread(self, channel: str, thread_ts: str) -> None:
        if not any(m["ts"] == thread_ts for m in self._state.messages[channel]):
            raise SlackError("thread_not_found")

    def _count_reply(self, channel: str, reply: dict[str, Any]) -> None:
        if "thread_ts" not in reply:
            return
        parent = self._find_message(channel, reply["thread_ts"])
        parent["reply_count"] = parent.get("reply_count", 0) + 1
        parent["latest_reply"] = reply["ts"]

    def _bot_message(self, params: Params, *, ts: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
            "text": params.get("text", ""),
        }
        for key in ("blocks", "attachments", "metadata"):
            if key in params:
                message[key] = params[key]
        return message

    def _next_ts(self) -> str:
        """Slack-style "seconds.micros", unique and strictly increasing."""
        micros = max(int(time.time() * 1_000_000), self._last_ts_micros + 1)
        self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _conversation(params: Params) -> str:
    channel = str(params.get("channel") or params.get("channel_id") or "")
    if not CONVERSATION_ID.match(channel):
        raise SlackError("channel_not_found")
    return channel


VIEW_BLOCKS_MAX = 100


def _view_param(params: Params, types: set[str]) -> dict[str, Any]:
    """The `view` argument, a JSON object of one of `types` with at most 100 blocks."""
    view = params.get("view")
    if not isinstance(view, dict) or view.get("type") not in types:
        raise SlackError("invalid_arguments")
    if len(view.get("blocks") or []) > VIEW_BLOCKS_MAX:
        raise SlackError("invalid_arguments")
    return view


def _require_content(params: Params) -> None:
    if not any(params.get(key) for key in ("text", "blocks", "attachments")):
        raise SlackError("no_text")


def _user(user_id: str, *, name: str, real_name: str = "", tz: str = "UTC") -> dict[str, Any]:
    return {
        "id": user_id,
        "team_id": TEAM_ID,
        "name": name,
        "real_name": real_name or name,
        "tz": tz,
        "is_bot": False,
        "deleted": False,
        "profile": {"display_name": name, "real_name": real_name or name},
    }


def _channel(channel_id: str, name: str, is_private: bool) -> dict[str, Any]:
    return {
        "id": channel_id,
        "name": name,
        "is_channel": channel_id.startswith("C"),
        "is_private": is_private,
        "is_im": channel_id.startswith("D"),
        "is_archived": False,
        "is_member": True,
    }


# ---- HTTP ------------------------------------------------------------------------------------


def _handler_for(standin: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(_StandInRequestHandler):
        owner = standin

    return Handler


class _StandInRequestHandler(BaseHTTPRequestHandler):
    owner: SlackStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the recorded calls are the log."""

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.startswith("/api/"):
            self._api(url.path.removeprefix("/api/"), url.query, body)
        elif url.path.startswith("/upload/v1/") and self.command == "POST":
            accepted = self.owner.accept_upload(url.path.removeprefix("/upload/v1/"), body)
            self._send(200 if accepted else 404, f"OK - {len(body)}" if accepted else "not found")
        elif url.path.startswith("/commands/") and self.command == "POST":
            self._response_url(url.path.removeprefix("/commands/"), body)
        else:
            self._send(404, "not found")

    def _api(self, method: str, query: str, body: bytes) -> None:
        try:
            params = self._params(query, body)
        except (ValueError, UnicodeDecodeError):
            self._send_json(200, {"ok": False, "error": "invalid_form_data"})
            return
        token = _bearer(self.headers.get("Authorization")) or params.pop("token", None)
        status, answer, retry_after = self.owner.answer_api(method, params, token)
        extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._send_json(status, answer, extra)

    def _params(self, query: str, body: bytes) -> Params:
        params: Params = dict(parse_qsl(query, keep_blank_values=True))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body and content_type == "application/json":
            decoded = json.loads(body)
            if not isinstance(decoded, dict):
                raise ValueError("a JSON body must be an object")
            params.update(decoded)
        elif body:
            params.update(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
        for key in JSON_ENCODED_PARAMS:
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    def _response_url(self, response_url_id: str, body: bytes) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            self._send(400, "invalid_payload")
            return
        self.owner.accept_response(response_url_id, payload)
        self._send(200, "ok")

    def _send_json(self, status: int, answer: Answer, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(answer), "application/json; charset=utf-8", extra)

    def _send(
        self,
        status: int,
        text: str,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _bearer(header: str | None) -> str | None:
    if header and header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return None
