"""The `/release` command grammar: slash-command text in, a typed command (or a UsageError) out.

Called by the Slack slash-command listener (handlers/commands.py), which acts on the command and
answers a UsageError with its message and usage text. Pure: no I/O, no Slack imports.

Decisions:
- Empty text is `help`. Subcommand and flag names are case-insensitive; app names must be
  lower-case DNS labels (the apps file's keys), plan names too.
- Slack sends `&`, `<` and `>` as `&amp;`, `&lt;`, `&gt;`; they are unescaped first. Clients that
  "smarten" typing turn `--` into an em or en dash and quotes into curly quotes: a word starting
  with a dash is read as `--`, and one pair of quotes (straight or curly) around a flag value or a
  whole reason is dropped.
- Flags may appear anywhere before the reason; for commands that take a reason, the first
  word after the app that is not a flag starts the reason, which runs to the end of the text.
  A flag of the command written inside the reason is refused rather than silently read as words
  (`pause shop-api db migration --for 1h` would otherwise pause with no end).
- `<version>` follows the image reference grammar of bot.core.images.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.core.durations import parse_duration
from bot.core.errors import ReleaseBotError
from bot.core.images import EXAMPLE_REFERENCE, ImageVersion, parse_version, shown
from bot.core.text import without_tokens

COMMAND = "/release"


class UsageError(ReleaseBotError):
    """The text is not a valid command: `problem` says what is wrong, `usage` shows the grammar."""

    def __init__(self, problem: str, *, usage: str) -> None:
        self.problem = without_tokens(problem)  # it quotes what was typed: a pasted token too
        self.usage = usage
        super().__init__(f"{self.problem}\n\n{usage}")


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True, kw_only=True)
class Help:
    """`/release help [subcommand]`; topic None: the whole grammar."""

    topic: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StartCanary:
    app: str
    version: ImageVersion
    plan: str | None
    """None: the app's plan from the apps file."""
    override: str | None = None
    """`--override "<reason>"`: break glass through a freeze or a lock (the reason)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartBlueGreen:
    app: str
    version: ImageVersion
    override: str | None = None
    """`--override "<reason>"`: break glass through a freeze or a lock (the reason)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartHybrid:
    app: str
    version: ImageVersion
    plan: str | None
    """The canary plan whose stages with public traffic follow the preview; None: the app's."""
    override: str | None = None
    """`--override "<reason>"`: break glass through a freeze or a lock (the reason)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenStartForm:
    """`/release canary` (or another strategy) with nothing after it: the start form."""

    strategy: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """One app's release; app None: every active release."""

    app: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListActive:
    """Every active release."""


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    app: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Advance:
    app: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Approve:
    app: str
    override: str | None = None
    """`--override "<reason>"`: break glass through a freeze."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    app: str
    reason: str
    """'' when none was given (as in bot.core.machine.Pause)."""
    duration_s: int | None
    """Resume by itself after this long; None: stay paused until resumed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    app: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback:
    app: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Promote:
    app: str
    full: bool
    """Skip the remaining stages and go to 100 % now."""
    override: str | None = None
    """`--override "<reason>"`: break glass through a freeze."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Start an aborted Argo Rollouts release again at its version."""

    app: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    app: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unlock:
    app: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Freeze:
    """A one-off freeze: no starts or widening steps for `duration_s`; app ALL: every app."""

    app: str
    duration_s: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unfreeze:
    app: str


Command = (
    Help
    | StartCanary
    | StartBlueGreen
    | OpenStartForm
    | StartHybrid
    | Status
    | ListActive
    | History
    | Advance
    | Approve
    | Pause
    | Resume
    | Rollback
    | Promote
    | Retry
    | Lock
    | Unlock
    | Freeze
    | Unfreeze
)


# ---------------------------------------------------------------- reading the words


@dataclass(frozen=True, slots=True)
class _Word:
    text: str
    start: int
    """Offset in the command text, so a reason keeps its own spacing."""


_SLACK_ESCAPES = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}
_SLACK_ESCAPE = re.compile("|".join(_SLACK_ESCAPES))
_SMART_DASH = re.compile("^[\u2013\u2014]")
_QUOTE_CLOSERS = {'"': '"', "'": "'", "\u201c": "\u201d\u201c", "\u2018": "\u2019\u2018"}
_MAX_NAME_LENGTH = 63
_NAME_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _unescape_slack(text: str) -> str:
    """One pass, so a typed `&amp;lt;` stays `&lt;`."""
    return _SLACK_ESCAPE.sub(lambda match: _SLACK_ESCAPES[match.group()], text)


def _unquote(text: str) -> str:
    """Drop one pair of quotes around the whole text, straight or curly, if nothing inside is
    quoted with the same marks (`"db" and "cache"` keeps its quotes)."""
    marks = text[:1] + _QUOTE_CLOSERS.get(text[:1], "")
    inner = text[1:-1]
    if len(text) >= 2 and text[-1] in marks[1:] and not any(mark in inner for mark in marks):
        return inner.strip()
    return text


def _is_flag(word: str) -> bool:
    return word.startswith("-") or _SMART_DASH.match(word) is not None


def _flag_name(word: str) -> str:
    return _SMART_DASH.sub("--", word).lower()


def _check_name(word: str, *, noun: str) -> str:
    if _NAME_LABEL.fullmatch(word) is not None and len(word) <= _MAX_NAME_LENGTH:
        return word
    if _NAME_LABEL.fullmatch(word.lower()) is not None and len(word) <= _MAX_NAME_LENGTH:
        raise ValueError(f"{noun}s are lower-case: write `{word.lower()}`, not `{word}`")
    if len(word) > _MAX_NAME_LENGTH:
        raise ValueError(
            f"{noun}s have at most {_MAX_NAME_LENGTH} characters, `{shown(word)}` has {len(word)}"
        )
    raise ValueError(
        f"`{shown(word)}` is not a valid {noun}: lower-case letters, digits and '-', starting and "
        "ending with a letter or digit"
    )


class _Arguments:
    """The words after the subcommand, sorted into positional words, flags and a reason.

    The subcommand's builder takes what it needs (`app()`, `version()`, `plan()`, ...), then
    `done()` refuses whatever is left over.
    """

    def __init__(self, syntax: _Syntax, *, text: str, words: list[_Word]) -> None:
        self._syntax = syntax
        self._positionals: list[_Word] = []
        self._taken: list[str] = []
        self._took_version = False
        self._flags: dict[str, str] = {}
        self.reason = ""
        self._text = text
        self._sort(text, words)

    def fail(self, problem: str) -> UsageError:
        return UsageError(problem, usage=usage_for(self._syntax.name))

    def _sort(self, text: str, words: list[_Word]) -> None:
        index = 0
        while index < len(words):
            word = words[index]
            if _is_flag(word.text):
                index = self._take_flag(words, index)
            elif (
                self._syntax.takes_reason
                and len(self._positionals) >= self._syntax.words_before_reason
            ):
                self.reason = self._read_reason(text[word.start :])
                return
            else:
                self._positionals.append(word)
                index += 1

    def _take_flag(self, words: list[_Word], index: int) -> int:
        """Record the flag at `index` (and its value); return the index of the next word."""
        name, equals, inline_value = words[index].text.partition("=")
        flag = _flag_name(name)
        command = f"`{COMMAND} {self._syntax.name}`"
        if not self._syntax.flags:
            raise self.fail(f"{command} takes no flags, but got `{words[index].text}`")
        if flag not in self._syntax.flags:
            close = difflib.get_close_matches(flag, self._syntax.flags, n=1, cutoff=0.5)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            shown_flags = [known for known in self._syntax.flags if known in self._syntax.arguments]
            accepted = ", ".join(f"`{known}`" for known in shown_flags or self._syntax.flags)
            raise self.fail(
                f"unknown flag `{shown(name)}` for {command}{hint}; it accepts {accepted}"
            )
        if flag in self._flags:
            raise self.fail(f"`{flag}` given twice")
        metavar = self._syntax.flags[flag]
        if not metavar:
            if equals:
                raise self.fail(f"`{flag}` takes no value, but got `{words[index].text}`")
            self._flags[flag] = ""
            return index + 1
        if equals:
            value, next_index = inline_value, index + 1
        elif index + 1 < len(words) and not _is_flag(words[index + 1].text):
            value, next_index = words[index + 1].text, index + 2
        else:
            value, next_index = "", index + 1
        if value[:1] in _QUOTE_CLOSERS and next_index < len(words):
            value, next_index = self._quoted_words(words, index, value, next_index)
        value = _unquote(value)
        if not value:
            raise self.fail(f"`{flag}` needs a value: `{flag} {metavar}`")
        self._flags[flag] = value
        return next_index

    def _quoted_words(
        self, words: list[_Word], index: int, value: str, next_index: int
    ) -> tuple[str, int]:
        """A quoted flag value of several words (`--override "db is down"`): up to the word
        that closes the quote, with the text's own spacing; unclosed: the first word alone."""
        closers = _QUOTE_CLOSERS[value[:1]]
        if len(value) > 1 and value[-1] in closers:
            return value, next_index
        opening = words[next_index - 1].start + len(words[next_index - 1].text) - len(value)
        for last in range(next_index, len(words)):
            if words[last].text[-1] in closers:
                end = words[last].start + len(words[last].text)
                return self._text[opening:end], last + 1
        return value, next_index

    def _read_reason(self, rest: str) -> str:
        for word in rest.split():
            flag = _flag_name(word.partition("=")[0])
            if _is_flag(word) and flag in self._syntax.flags:
                raise self.fail(
                    f"`{flag}` must come before the reason, not inside it: "
                    f"`{COMMAND} {self._syntax.name} <app> {flag} "
                    f"{self._syntax.flags[flag]} <reason>`"
                )
        return _unquote(rest.strip())

    def _next_word(self) -> str | None:
        if not self._positionals:
            return None
        word = self._positionals.pop(0).text
        self._taken.append(word)
        return word

    def _checked(self, word: str, *, noun: str) -> str:
        try:
            return _check_name(word, noun=noun)
        except ValueError as error:
            raise self.fail(str(error)) from None

    def app(self) -> str:
        word = self._next_word()
        if word is None:
            raise self.fail(f"`{COMMAND} {self._syntax.name}` needs an app name")
        return self._checked(word, noun="app name")

    def optional_app(self) -> str | None:
        word = self._next_word()
        return None if word is None else self._checked(word, noun="app name")

    def version(self) -> ImageVersion:
        word = self._next_word()
        if word is None:
            raise self.fail(
                f"`{self._so_far()}` needs a version: an image tag such as `v2.4.1` or a full "
                f"image reference such as `{EXAMPLE_REFERENCE}`"
            )
        self._took_version = True
        try:
            return parse_version(word)
        except ValueError as error:
            raise self.fail(f"`{shown(word)}` is not a valid version: {error}") from None

    def topic(self) -> str | None:
        word = self._next_word()
        return None if word is None else _known_subcommand(word).name

    def switch(self, flag: str) -> bool:
        return flag in self._flags

    def plan(self) -> str | None:
        plan = self._flags.get("--plan")
        return None if plan is None else self._checked(plan, noun="plan name")

    def duration_s(self) -> int | None:
        value = self._flags.get("--for")
        if value is None:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            raise self.fail(f"`--for {value}`: {error}") from None
        if seconds == 0:
            raise self.fail(f"`--for {value}`: a timed pause must last longer than 0s")
        return seconds

    def override(self) -> str | None:
        return self._flags.get("--override")

    def positive_duration(self) -> int:
        word = self._next_word()
        if word is None:
            raise self.fail(f"`{self._so_far()}` needs a duration such as `2h`, `30m` or `1d`")
        try:
            seconds = parse_duration(word)
        except ValueError as error:
            raise self.fail(str(error)) from None
        if seconds == 0:
            raise self.fail(f"`{word}`: a freeze must last longer than 0s")
        return seconds

    def empty(self) -> bool:
        """Nothing at all follows the subcommand."""
        return not (self._positionals or self._flags or self.reason)

    def done(self) -> None:
        """Refuse words nobody took."""
        if not self._positionals:
            return
        extra = shown(" ".join(word.text for word in self._positionals))
        if self._took_version:
            plan_hint = (
                " (to choose a plan, write `--plan NAME`)" if "--plan" in self._syntax.flags else ""
            )
            raise self.fail(
                f"version given twice: `{shown(self._taken[-1])}`, then `{extra}`; a release "
                f"deploys one version{plan_hint}"
            )
        raise self.fail(f"unexpected `{extra}` after `{self._so_far()}`: nothing may follow it")

    def _so_far(self) -> str:
        return " ".join([COMMAND, self._syntax.name, *self._taken])


# ---------------------------------------------------------------- the grammar


@dataclass(frozen=True, slots=True, kw_only=True)
class _Syntax:
    name: str
    arguments: str
    summary: str
    build: Callable[[_Arguments], Command]
    flags: Mapping[str, str] = field(default_factory=dict)
    """Flag -> its value's placeholder; '' for a switch."""
    starts: bool = False
    """A strategy: starts a release, and with nothing after it opens the start form."""
    takes_reason: bool = False
    """Free text after the app, to the end of the line."""
    words_before_reason: int = 1
    """How many words (the app, and more) come before the reason."""


_OVERRIDE_SUMMARY = '; --override "<reason>": break glass'
_GRAMMAR = {
    syntax.name: syntax
    for syntax in (
        _Syntax(
            name="help",
            arguments="[<subcommand>]",
            summary="this text, or one subcommand's",
            build=lambda args: Help(topic=args.topic()),
        ),
        _Syntax(
            name="canary",
            arguments="<app> <version> [--plan NAME]",
            summary=f"start a canary release (plan: the app's, or NAME){_OVERRIDE_SUMMARY}",
            build=lambda args: (
                OpenStartForm(strategy="canary")
                if args.empty()
                else StartCanary(
                    app=args.app(),
                    version=args.version(),
                    plan=args.plan(),
                    override=args.override(),
                )
            ),
            flags={"--plan": "NAME", "--override": '"<reason>"'},
            starts=True,
        ),
        _Syntax(
            name="bluegreen",
            arguments="<app> <version>",
            summary=(
                "start a blue-green release: green beside blue, one switch after approval"
                f"{_OVERRIDE_SUMMARY}"
            ),
            build=lambda args: (
                OpenStartForm(strategy="bluegreen")
                if args.empty()
                else StartBlueGreen(
                    app=args.app(), version=args.version(), override=args.override()
                )
            ),
            flags={"--override": '"<reason>"'},
            starts=True,
        ),
        _Syntax(
            name="hybrid",
            arguments="<app> <version> [--plan NAME]",
            summary=(
                "start a hybrid release: green beside blue on its preview, then canary stages "
                f"onto it{_OVERRIDE_SUMMARY}"
            ),
            build=lambda args: (
                OpenStartForm(strategy="hybrid")
                if args.empty()
                else StartHybrid(
                    app=args.app(),
                    version=args.version(),
                    plan=args.plan(),
                    override=args.override(),
                )
            ),
            flags={"--plan": "NAME", "--override": '"<reason>"'},
            starts=True,
        ),
        _Syntax(
            name="status",
            arguments="[<app>]",
            summary="one app's release; no app: all active releases",
            build=lambda args: Status(app=args.optional_app()),
        ),
        _Syntax(
            name="list",
            arguments="",
            summary="active releases",
            build=lambda args: ListActive(),
        ),
        _Syntax(
            name="history",
            arguments="<app>",
            summary="the app's past releases",
            build=lambda args: History(app=args.app()),
        ),
        _Syntax(
            name="advance",
            arguments="<app>",
            summary="next stage now; gates still apply",
            build=lambda args: Advance(app=args.app()),
        ),
        _Syntax(
            name="approve",
            arguments="<app>",
            summary=f"approve the stage waiting for approval{_OVERRIDE_SUMMARY}",
            build=lambda args: Approve(app=args.app(), override=args.override()),
            flags={"--override": '"<reason>"'},
        ),
        _Syntax(
            name="pause",
            arguments="<app> [--for DURATION] [reason]",
            summary="hold the current stage; --for 30m, 2h, 1h30m: resume by itself",
            build=lambda args: Pause(
                app=args.app(), reason=args.reason, duration_s=args.duration_s()
            ),
            flags={"--for": "DURATION"},
            takes_reason=True,
        ),
        _Syntax(
            name="resume",
            arguments="<app>",
            summary="continue a paused release",
            build=lambda args: Resume(app=args.app()),
        ),
        _Syntax(
            name="rollback",
            arguments="<app> [reason]",
            summary="back to the stable version now (blue-green: back to blue while blue exists)",
            build=lambda args: Rollback(app=args.app(), reason=args.reason),
            takes_reason=True,
        ),
        _Syntax(
            name="promote",
            arguments="<app> [--full]",
            summary=f"next stage; --full: skip remaining stages{_OVERRIDE_SUMMARY}",
            build=lambda args: Promote(
                app=args.app(), full=args.switch("--full"), override=args.override()
            ),
            flags={"--full": "", "--override": '"<reason>"'},
        ),
        _Syntax(
            name="retry",
            arguments="<app>",
            summary="Argo Rollouts: retry an aborted rollout (its steps again from the first)",
            build=lambda args: Retry(app=args.app()),
        ),
        _Syntax(
            name="lock",
            arguments="<app> [reason]",
            summary="refuse new releases of the app until unlocked",
            build=lambda args: Lock(app=args.app(), reason=args.reason),
            takes_reason=True,
        ),
        _Syntax(
            name="unlock",
            arguments="<app>",
            summary="allow releases again",
            build=lambda args: Unlock(app=args.app()),
        ),
        _Syntax(
            name="freeze",
            arguments="<app|all> <duration> [reason]",
            summary="no starts or widening steps for DURATION (2h, 1d)",
            build=lambda args: Freeze(
                app=args.app(), duration_s=args.positive_duration(), reason=args.reason
            ),
            takes_reason=True,
            words_before_reason=2,
        ),
        _Syntax(
            name="unfreeze",
            arguments="<app|all>",
            summary="end a freeze set with freeze (not a recurring window)",
            build=lambda args: Unfreeze(app=args.app()),
        ),
    )
}

STRATEGIES = tuple(syntax.name for syntax in _GRAMMAR.values() if syntax.starts)
"""The subcommands that start a release, in the grammar's order: the start form's choices."""

_VERSION_NOTE = (
    f"<version>: an image tag (v2.4.1) or a full image reference ({EXAMPLE_REFERENCE}, "
    "registry.local:5000/shop-api@sha256:<64 hex digits>)."
)
_APP_NOTE = "<app>: the app's name in the apps file (lower-case); `all`: every app."
_FORM_NOTE = (
    f"With nothing after it, {' or '.join(f'{COMMAND} {name}' for name in STRATEGIES)} opens "
    "a form to start a release, listing the apps you may start."
)
_OVERRIDE_NOTE = (
    '--override "<reason>" (canary, bluegreen, hybrid, approve, promote): break glass through a '
    "freeze (and a lock, for a start); only the apps file's break_glass may, and it is announced "
    "in the channel."
)
_STRATEGY_NOTE = (
    "Which: canary for frequent releases (a little real traffic first, widened stage by stage); "
    "bluegreen for critical infrastructure and strict compliance (green verified on its preview "
    "Service, then production switched in one step, blue kept as the instant way back; twice "
    "the pods); hybrid for a new stack: green previewed like blue-green, then its production "
    "traffic widened in the canary plan's stages."
)


def _call(syntax: _Syntax) -> str:
    return " ".join(part for part in (COMMAND, syntax.name, syntax.arguments) if part)


_CALL_WIDTH = max(len(_call(syntax)) for syntax in _GRAMMAR.values()) + 2


def _usage_line(syntax: _Syntax) -> str:
    return f"{_call(syntax):<{_CALL_WIDTH}}{syntax.summary}"


USAGE = "\n".join(
    [
        "Usage:",
        *(_usage_line(syntax) for syntax in _GRAMMAR.values()),
        _FORM_NOTE,
        _OVERRIDE_NOTE,
        _STRATEGY_NOTE,
        _APP_NOTE,
        _VERSION_NOTE,
    ]
)
"""The whole grammar, plain text (a Slack reply shows it in a code block)."""


def _known_subcommand(word: str) -> _Syntax:
    syntax = _GRAMMAR.get(word.lower())
    if syntax is not None:
        return syntax
    close = difflib.get_close_matches(word.lower(), _GRAMMAR, n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    raise UsageError(f"unknown subcommand `{shown(word)}`{hint}", usage=USAGE)


def usage_for(subcommand: str) -> str:
    """One subcommand's usage line and notes; UsageError for an unknown subcommand."""
    syntax = _known_subcommand(subcommand)
    lines = ["Usage:", _usage_line(syntax)]
    if syntax.starts:
        lines.extend((_FORM_NOTE, _STRATEGY_NOTE))
    if "<app" in syntax.arguments:
        lines.append(_APP_NOTE)
    if "<version>" in syntax.arguments:
        lines.append(_VERSION_NOTE)
    return "\n".join(lines)


def parse_command(text: str) -> Command:
    """Read the text Slack sends after `/release`; UsageError says what is wrong, with usage."""
    text = _unescape_slack(text)
    words = [_Word(match.group(), match.start()) for match in re.finditer(r"\S+", text)]
    if not words:
        return Help()
    syntax = _known_subcommand(words[0].text)
    arguments = _Arguments(syntax, text=text, words=words[1:])
    command = syntax.build(arguments)
    arguments.done()
    return command


def takes_plan(strategy: str) -> bool:
    """The strategy's start command takes `--plan NAME`."""
    return "--plan" in _known_subcommand(strategy).flags


def start_command(strategy: str, *, app: str, version: str, plan: str | None) -> Command:
    """The start command a form's fields stand for, read by the same grammar as typed text (the
    same checks, the same UsageError); a field of more than one word is refused, so a field can
    never smuggle in a flag."""
    fields = {"strategy": strategy, "app": app, "version": version, "plan": plan or ""}
    for name, value in fields.items():
        if len(value.split()) > 1:
            raise UsageError(f"the {name} is one word, not `{shown(value)}`", usage=USAGE)
    if strategy not in STRATEGIES:
        raise UsageError(f"`{shown(strategy)}` is not a strategy", usage=USAGE)
    words = [strategy, app, version, *(["--plan", plan] if plan else [])]
    command = parse_command(" ".join(words))
    if isinstance(command, OpenStartForm):
        raise UsageError(f"`{COMMAND} {strategy}` needs an app name", usage=usage_for(strategy))
    return command
