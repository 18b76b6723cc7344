"""The `/release` grammar (bot.core.commands): pure, so no service is started.

Run by pytest. Every subcommand parses into its command; every kind of mistake is answered with
its own message and the right usage text; versions follow github.com/distribution/reference,
checked against generated references and against an independent transcription of its regexp.
"""

from __future__ import annotations

import random
import re
import string
from typing import get_args

import pytest

from bot.core.commands import (
    STRATEGIES,
    USAGE,
    Advance,
    Approve,
    Command,
    Freeze,
    Help,
    History,
    ImageVersion,
    ListActive,
    Lock,
    OpenStartForm,
    Pause,
    Promote,
    Resume,
    Retry,
    Rollback,
    StartBlueGreen,
    StartCanary,
    StartHybrid,
    Status,
    Unfreeze,
    Unlock,
    UsageError,
    parse_command,
    parse_version,
    start_command,
    takes_plan,
    usage_for,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4
FULL_REFERENCE = f"registry.local:5000/acme/shop-api:v2.4.1@{DIGEST}"


def tag(text: str) -> ImageVersion:
    return ImageVersion(text=text, repository=None, tag=text, digest=None)


# ---------------------------------------------------------------- every subcommand parses

VALID: list[tuple[str, Command]] = [
    ("", Help()),
    ("   \t ", Help()),
    ("help", Help()),
    ("HELP Pause", Help(topic="pause")),
    ("canary shop-api v2.4.1", StartCanary(app="shop-api", version=tag("v2.4.1"), plan=None)),
    (
        "canary shop-api v2.4.1 --plan fast",
        StartCanary(app="shop-api", version=tag("v2.4.1"), plan="fast"),
    ),
    (
        "canary --plan=fast shop-api v2.4.1",
        StartCanary(app="shop-api", version=tag("v2.4.1"), plan="fast"),
    ),
    # What a Mac sends after "smartening" `--plan "fast"`; and a mobile keyboard's capital.
    (
        "Canary shop-api v2.4.1 \u2014plan \u201cfast\u201d",
        StartCanary(app="shop-api", version=tag("v2.4.1"), plan="fast"),
    ),
    (
        "canary\u00a0shop-api\u00a0v2.4.1",
        StartCanary(app="shop-api", version=tag("v2.4.1"), plan=None),
    ),
    (
        f"bluegreen shop-api {FULL_REFERENCE}",
        StartBlueGreen(
            app="shop-api",
            version=ImageVersion(
                text=FULL_REFERENCE,
                repository="registry.local:5000/acme/shop-api",
                tag="v2.4.1",
                digest=DIGEST,
            ),
        ),
    ),
    ("canary", OpenStartForm(strategy="canary")),
    ("BlueGreen  ", OpenStartForm(strategy="bluegreen")),
    ("hybrid", OpenStartForm(strategy="hybrid")),
    (
        'hybrid shop-api v2.4.1 --plan fast --override "friday fix"',
        StartHybrid(app="shop-api", version=tag("v2.4.1"), plan="fast", override="friday fix"),
    ),
    ("status", Status(app=None)),
    ("STATUS shop-api", Status(app="shop-api")),
    ("list", ListActive()),
    ("history shop-api", History(app="shop-api")),
    ("advance shop-api", Advance(app="shop-api")),
    ("approve shop-api", Approve(app="shop-api")),
    ("pause shop-api", Pause(app="shop-api", reason="", duration_s=None)),
    (
        "pause shop-api waiting for the DBA",
        Pause(app="shop-api", reason="waiting for the DBA", duration_s=None),
    ),
    (
        "pause shop-api --for 1h30m waiting for the DBA",
        Pause(app="shop-api", reason="waiting for the DBA", duration_s=5400),
    ),
    ("pause --for=90s shop-api", Pause(app="shop-api", reason="", duration_s=90)),
    (
        "pause shop-api \u2013for 2h \u201cdb migration\u201d",
        Pause(app="shop-api", reason="db migration", duration_s=7200),
    ),
    ("resume shop-api", Resume(app="shop-api")),
    ("rollback shop-api", Rollback(app="shop-api", reason="")),
    (
        "rollback shop-api p99 &gt; 2s &amp; errors &lt; 1%",
        Rollback(app="shop-api", reason="p99 > 2s & errors < 1%"),
    ),
    ("rollback shop-api  errors   spiked  ", Rollback(app="shop-api", reason="errors   spiked")),
    (
        "rollback shop-api errors -- see INC-42",
        Rollback(app="shop-api", reason="errors -- see INC-42"),
    ),
    (
        'rollback shop-api "db" and "cache" are down',
        Rollback(app="shop-api", reason='"db" and "cache" are down'),
    ),
    ("rollback shop-api 'it's on fire'", Rollback(app="shop-api", reason="'it's on fire'")),
    ("promote shop-api", Promote(app="shop-api", full=False)),
    ("promote shop-api --FULL", Promote(app="shop-api", full=True)),
    ("retry shop-api", Retry(app="shop-api")),
    ("lock shop-api", Lock(app="shop-api", reason="")),
    (
        "lock shop-api code freeze until Monday's release",
        Lock(app="shop-api", reason="code freeze until Monday's release"),
    ),
    # Slack's escapes are undone in one pass: a typed `&lt;` arrives as `&amp;lt;` and stays `&lt;`.
    ("lock shop-api see &amp;lt;wiki&amp;gt;", Lock(app="shop-api", reason="see &lt;wiki&gt;")),
    ("unlock shop-api", Unlock(app="shop-api")),
    ("freeze all 2h release train", Freeze(app="all", duration_s=7200, reason="release train")),
    ("freeze shop-api 1d30m", Freeze(app="shop-api", duration_s=88200, reason="")),
    ("unfreeze all", Unfreeze(app="all")),
    (
        'canary shop-api v2.4.1 --override "db is down,  hotfix"',
        StartCanary(
            app="shop-api", version=tag("v2.4.1"), plan=None, override="db is down,  hotfix"
        ),
    ),
    (
        "approve shop-api —override “sev1 fix”",
        Approve(app="shop-api", override="sev1 fix"),
    ),
    (
        'promote shop-api --override="hot fix" --full',
        Promote(app="shop-api", full=True, override="hot fix"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[text or "(empty)" for text, _ in VALID])
def test_valid_text_parses_into_its_command(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


def test_the_valid_table_covers_every_command_type() -> None:
    assert {type(command) for _, command in VALID} == set(get_args(Command))


# ---------------------------------------------------------------- every mistake is named

VERSION_NEEDED = (
    "needs a version: an image tag such as `v2.4.1` or a full image reference such as "
    "`ghcr.io/acme/shop-api:v2.4.1`"
)

MISTAKES: list[tuple[str, str, str | None]] = [
    # (text, problem, subcommand whose usage comes with it; None: the whole grammar)
    ("canry shop-api v1", "unknown subcommand `canry` (did you mean `canary`?)", None),
    ("rollbak shop-api", "unknown subcommand `rollbak` (did you mean `rollback`?)", None),
    ("deploy shop-api v1", "unknown subcommand `deploy`", None),
    ("help canry", "unknown subcommand `canry` (did you mean `canary`?)", None),
    ("canary --plan fast", "`/release canary` needs an app name", "canary"),
    ("history", "`/release history` needs an app name", "history"),
    ("pause --for 30m", "`/release pause` needs an app name", "pause"),
    ("canary shop-api", f"`/release canary shop-api` {VERSION_NEEDED}", "canary"),
    (
        "bluegreen shop-api --",
        "unknown flag `--` for `/release bluegreen`; it accepts `--override`",
        "bluegreen",
    ),
    ("bluegreen shop-api", f"`/release bluegreen shop-api` {VERSION_NEEDED}", "bluegreen"),
    (
        "canary shop-api v1..bad!",
        "`v1..bad!` is not a valid version: the tag `v1..bad!` may contain only letters, "
        "digits, '_', '.' and '-'",
        "canary",
    ),
    (
        "canary shop-api .v1",
        "`.v1` is not a valid version: the tag `.v1` must start with a letter, digit or '_'",
        "canary",
    ),
    (
        "bluegreen shop-api ghcr.io/Acme/shop-api:v1",
        "`ghcr.io/Acme/shop-api:v1` is not a valid version: the repository `ghcr.io/Acme/shop-api` "
        "must be lower-case",
        "bluegreen",
    ),
    ("canary Shop-API v1", "app names are lower-case: write `shop-api`, not `Shop-API`", "canary"),
    (
        "history shop_api",
        "`shop_api` is not a valid app name: lower-case letters, digits and '-', starting and "
        "ending with a letter or digit",
        "history",
    ),
    (
        "status shop-",
        "`shop-` is not a valid app name: lower-case letters, digits and '-', starting and "
        "ending with a letter or digit",
        "status",
    ),
    (
        "approve " + "a" * 64,
        f"app names have at most 63 characters, `{'a' * 60}...` has 64",
        "approve",
    ),
    (
        "canary shop-api v1 --plan Fast",
        "plan names are lower-case: write `fast`, not `Fast`",
        "canary",
    ),
    (
        "canary shop-api v1 --pln fast",
        "unknown flag `--pln` for `/release canary` (did you mean `--plan`?); it accepts `--plan`",
        "canary",
    ),
    (
        "promote shop-api -full",
        "unknown flag `-full` for `/release promote` (did you mean `--full`?); it accepts `--full`",
        "promote",
    ),
    (
        "pause shop-api --until 5pm",
        "unknown flag `--until` for `/release pause`; it accepts `--for`",
        "pause",
    ),
    ("status shop-api --full", "`/release status` takes no flags, but got `--full`", "status"),
    (
        "rollback shop-api --force",
        "`/release rollback` takes no flags, but got `--force`",
        "rollback",
    ),
    ("canary shop-api v1 --plan", "`--plan` needs a value: `--plan NAME`", "canary"),
    ("canary shop-api v1 --plan --plan", "`--plan` needs a value: `--plan NAME`", "canary"),
    ("canary shop-api v1 --plan=", "`--plan` needs a value: `--plan NAME`", "canary"),
    ("canary shop-api v1 --plan \u201c\u201d", "`--plan` needs a value: `--plan NAME`", "canary"),
    ("pause shop-api --for", "`--for` needs a value: `--for DURATION`", "pause"),
    ("canary shop-api v1 --plan a --plan b", "`--plan` given twice", "canary"),
    ("promote shop-api --full --full", "`--full` given twice", "promote"),
    (
        "freeze shop-api",
        "`/release freeze shop-api` needs a duration such as `2h`, `30m` or `1d`",
        "freeze",
    ),
    ("freeze all 0s", "`0s`: a freeze must last longer than 0s", "freeze"),
    (
        "approve shop-api --override",
        '`--override` needs a value: `--override "<reason>"`',
        "approve",
    ),
    ("promote shop-api --full=yes", "`--full` takes no value, but got `--full=yes`", "promote"),
    ("pause shop-api --for 0s", "`--for 0s`: a timed pause must last longer than 0s", "pause"),
    (
        "pause shop-api db migration --for 1h",
        "`--for` must come before the reason, not inside it: "
        "`/release pause <app> --for DURATION <reason>`",
        "pause",
    ),
    (
        "list everything",
        "unexpected `everything` after `/release list`: nothing may follow it",
        "list",
    ),
    (
        "resume shop-api now please",
        "unexpected `now please` after `/release resume shop-api`: nothing may follow it",
        "resume",
    ),
    (
        "status shop-api cart-api",
        "unexpected `cart-api` after `/release status shop-api`: nothing may follow it",
        "status",
    ),
    (
        "help canary bluegreen",
        "unexpected `bluegreen` after `/release help canary`: nothing may follow it",
        "help",
    ),
    (
        "canary shop-api v1 fast",
        "version given twice: `v1`, then `fast`; a release deploys one version "
        "(to choose a plan, write `--plan NAME`)",
        "canary",
    ),
    (
        "bluegreen shop-api v1 --  v2",
        "unknown flag `--` for `/release bluegreen`; it accepts `--override`",
        "bluegreen",
    ),
    (
        "bluegreen shop-api v1 v2",
        "version given twice: `v1`, then `v2`; a release deploys one version",
        "bluegreen",
    ),
]


@pytest.mark.parametrize(("text", "problem", "subcommand"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_names_the_problem_and_shows_usage(
    text: str, problem: str, subcommand: str | None
) -> None:
    with pytest.raises(UsageError) as raised:
        parse_command(text)
    assert raised.value.problem == problem
    assert raised.value.usage == (USAGE if subcommand is None else usage_for(subcommand))
    assert str(raised.value) == f"{problem}\n\n{raised.value.usage}"


def test_a_bad_duration_repeats_the_value_and_explains_the_form() -> None:
    with pytest.raises(UsageError) as raised:
        parse_command("pause shop-api --for soon")
    assert raised.value.problem.startswith("`--for soon`: 'soon' is not a duration: ")
    assert "'1h'" in raised.value.problem


def test_a_pasted_blob_is_quoted_short_in_the_message() -> None:
    blob = "x" * 500
    with pytest.raises(UsageError) as raised:
        parse_command(f"list {blob}")
    assert raised.value.problem == (
        f"unexpected `{'x' * 60}...` after `/release list`: nothing may follow it"
    )


# ---------------------------------------------------------------- usage text


def test_usage_lists_every_subcommand_once_and_explains_app_and_version() -> None:
    lines = USAGE.splitlines()
    names = [
        "help",
        "canary",
        "bluegreen",
        "hybrid",
        "status",
        "list",
        "history",
        "advance",
        "approve",
    ]
    names += ["pause", "resume", "rollback", "promote", "lock", "unlock"]
    for name in names:
        assert len([line for line in lines if line.split()[:2] == ["/release", name]]) == 1, name
    assert "/release pause <app> [--for DURATION] [reason]" in USAGE
    assert "/release promote <app> [--full]" in USAGE
    assert lines[-2].startswith("<app>:")
    assert lines[-1].startswith("<version>: an image tag (v2.4.1) or a full image reference")


def test_usage_for_one_subcommand_shows_its_line_and_only_the_notes_it_needs() -> None:
    canary = usage_for("CANARY").splitlines()
    assert canary[1].startswith("/release canary <app> <version> [--plan NAME]  ")
    assert [line.split(":")[0].split(",")[0] for line in canary[2:]] == [
        "With nothing after it",
        "Which",
        "<app>",
        "<version>",
    ]
    assert [line.split(":")[0] for line in usage_for("lock").splitlines()[2:]] == ["<app>"]
    assert usage_for("list").splitlines()[1:] == [
        line for line in USAGE.splitlines() if line.startswith("/release list ")
    ]
    with pytest.raises(UsageError, match=r"unknown subcommand `nope`"):
        usage_for("nope")


# ---------------------------------------------------------------- versions: valid and invalid

VALID_VERSIONS: list[tuple[str, str | None, str | None, str | None]] = [
    # (text, repository, tag, digest)
    ("v2.4.1", None, "v2.4.1", None),
    ("_build-7", None, "_build-7", None),
    ("V2_RC.1", None, "V2_RC.1", None),
    ("t" * 128, None, "t" * 128, None),
    ("shop-api:v1", "shop-api", "v1", None),
    ("ghcr.io/acme/shop-api:v2.4.1", "ghcr.io/acme/shop-api", "v2.4.1", None),
    ("localhost:5000/shop-api:v1", "localhost:5000/shop-api", "v1", None),
    ("10.0.0.7:5000/team/shop-api:v1", "10.0.0.7:5000/team/shop-api", "v1", None),
    ("[::1]:5000/shop-api:v1", "[::1]:5000/shop-api", "v1", None),
    ("Registry.Example.com/a__b/c.d/e---f:x", "Registry.Example.com/a__b/c.d/e---f", "x", None),
    (f"ghcr.io/acme/shop-api@{DIGEST}", "ghcr.io/acme/shop-api", None, DIGEST),
    (FULL_REFERENCE, "registry.local:5000/acme/shop-api", "v2.4.1", DIGEST),
    ("acme/app@sha512:" + "f" * 128, "acme/app", None, "sha512:" + "f" * 128),
]


@pytest.mark.parametrize(("text", "repository", "tag_", "digest"), VALID_VERSIONS)
def test_valid_versions_split_into_their_parts(
    text: str, repository: str | None, tag_: str | None, digest: str | None
) -> None:
    version = parse_version(text)
    assert version == ImageVersion(text=text, repository=repository, tag=tag_, digest=digest)
    assert version.is_tag == (repository is None)
    assert str(version) == text


NOT_A_REPOSITORY = (
    "is not an image repository: lower-case path components of letters and digits joined by "
    "'.', '_', '__' or '-', separated by '/', after an optional registry host[:port], e.g. "
    "`ghcr.io/acme/shop-api:v2.4.1`"
)

INVALID_VERSIONS: list[tuple[str, str]] = [
    ("ghcr.io/Acme/shop-api:v1", "the repository `ghcr.io/Acme/shop-api` must be lower-case"),
    ("ghcr.io/acme/shop-api:", "the tag after ':' is empty"),
    ("t" * 129, "a tag has at most 128 characters, this one has 129"),
    ("shop-api:" + "t" * 129, "a tag has at most 128 characters, this one has 129"),
    ("-v1", "the tag `-v1` must start with a letter, digit or '_'"),
    ("v1+build", "the tag `v1+build` may contain only letters, digits, '_', '.' and '-'"),
    ("shop-api@", "the digest after '@' is empty"),
    ("shop-api@sha256:" + "0" * 63, "a sha256 digest has 64 hex digits, this one has 63"),
    ("shop-api@sha256:" + "0" * 65, "a sha256 digest has 64 hex digits, this one has 65"),
    ("shop-api@sha256:" + "A" * 64, "the sha256 digest must be lower-case hex digits (0-9, a-f)"),
    ("shop-api@sha256:" + "g" * 64, "the sha256 digest must be lower-case hex digits (0-9, a-f)"),
    ("shop-api@md5:" + "0" * 32, "unsupported digest algorithm `md5`: use sha256, sha384, sha512"),
    (
        "shop-api@" + "0" * 64,
        f"the digest `{'0' * 60}...` must be `sha256:` followed by 64 hex digits",
    ),
    ("shop-api@v1@sha256", "the digest `v1@sha256` must be `sha256:` followed by 64 hex digits"),
    (":v1", "the image repository is missing, e.g. `ghcr.io/acme/shop-api:v2.4.1`"),
    (f"@{DIGEST}", "the image repository is missing, e.g. `ghcr.io/acme/shop-api:v2.4.1`"),
    (
        DIGEST,
        "a digest alone is not a version: put the repository before it, e.g. "
        f"`ghcr.io/acme/shop-api@{DIGEST}`",
    ),
    (
        "ghcr.io/acme/shop-api",
        "a repository alone names no version: add a tag (`ghcr.io/acme/shop-api:v2.4.1`) or a "
        "digest (`ghcr.io/acme/shop-api@sha256:...`)",
    ),
    ("ghcr.io//shop-api:v1", f"`ghcr.io//shop-api` {NOT_A_REPOSITORY}"),
    ("ghcr.io/acme/shop-api-:v1", f"`ghcr.io/acme/shop-api-` {NOT_A_REPOSITORY}"),
    ("ghcr.io:port/shop-api:v1", f"`ghcr.io:port/shop-api` {NOT_A_REPOSITORY}"),
    ("a/" + "b" * 256 + ":v1", "a repository path has at most 255 characters, this one has 256"),
]


@pytest.mark.parametrize(
    ("text", "problem"), INVALID_VERSIONS, ids=[t[:40] for t, _ in INVALID_VERSIONS]
)
def test_invalid_versions_say_which_part_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_version(text)
    assert str(raised.value) == problem


# ---------------------------------------------------------------- versions: generated round trips

_LOWER_ALNUM = string.ascii_lowercase + string.digits
_TAG_FIRST = string.ascii_letters + string.digits + "_"
_TAG_REST = _TAG_FIRST + ".-"


def _random_tag(rng: random.Random) -> str:
    length = rng.choice([1, 2, 8, 40, 127, 128])
    return rng.choice(_TAG_FIRST) + "".join(rng.choice(_TAG_REST) for _ in range(length - 1))


def _random_path(rng: random.Random) -> str:
    def component() -> str:
        words = [
            "".join(rng.choices(_LOWER_ALNUM, k=rng.randint(1, 6)))
            for _ in range(rng.randint(1, 3))
        ]
        separators = [rng.choice([".", "_", "__", "-", "---"]) for _ in words[1:]]
        return words[0] + "".join(
            sep + word for sep, word in zip(separators, words[1:], strict=True)
        )

    return "/".join(component() for _ in range(rng.randint(1, 4)))


def _random_registry(rng: random.Random) -> str:
    host = rng.choice(
        [
            "localhost",
            "ghcr.io",
            "Registry-1.Example.COM",
            "10.0.0.7",
            "[::1]",
            "[2001:db8::7]",
            "a.b-c.d",
        ]
    )
    return host + rng.choice(["", ":5000", ":443", ":1"])


def _random_digest(rng: random.Random) -> str:
    algorithm, length = rng.choice([("sha256", 64), ("sha384", 96), ("sha512", 128)])
    return f"{algorithm}:" + "".join(rng.choices("0123456789abcdef", k=length))


def _random_reference(rng: random.Random) -> tuple[str, str, str | None, str | None]:
    repository = _random_path(rng)
    if rng.random() < 0.7:
        repository = f"{_random_registry(rng)}/{repository}"
    shape = rng.choice(["tag", "digest", "both"])
    tag_ = _random_tag(rng) if shape in ("tag", "both") else None
    digest = _random_digest(rng) if shape in ("digest", "both") else None
    text = repository + (f":{tag_}" if tag_ else "") + (f"@{digest}" if digest else "")
    return text, repository, tag_, digest


def test_generated_full_references_round_trip_into_their_parts() -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        text, repository, tag_, digest = _random_reference(rng)
        version = parse_version(text)
        assert (version.repository, version.tag, version.digest) == (repository, tag_, digest), text
        assert not version.is_tag
        rebuilt = f"{version.repository}" + (f":{version.tag}" if version.tag else "")
        assert rebuilt + (f"@{version.digest}" if version.digest else "") == text


def test_generated_tags_round_trip_as_bare_tags() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        text = _random_tag(rng)
        assert parse_version(text) == tag(text)
        assert parse_command(f"canary shop-api {text}") == StartCanary(
            app="shop-api", version=tag(text), plan=None
        )


# An independent transcription of github.com/distribution/reference regexp.go (ReferenceRegexp)
# plus go-digest's per-algorithm check, as the oracle for mutated inputs.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_PART = _ALNUM + rf"(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[(?:[a-fA-F0-9:]+)\])"
_REMOTE_NAME = _PATH_PART + rf"(?:/{_PATH_PART})*"
_NAME_PAT = rf"(?:{_HOST}(?::[0-9]+)?/)?{_REMOTE_NAME}"
_TAG_PAT = r"[\w][\w.-]{0,127}"
_DIGEST_PAT = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
ORACLE_REFERENCE = re.compile(rf"({_NAME_PAT})(?::({_TAG_PAT}))?(?:@({_DIGEST_PAT}))?", re.ASCII)
ORACLE_NAME = re.compile(rf"(?:{_HOST}(?::[0-9]+)?/)?({_REMOTE_NAME})", re.ASCII)
ORACLE_TAG = re.compile(_TAG_PAT, re.ASCII)
GO_DIGEST_HEX = {"sha256": r"[a-f0-9]{64}", "sha384": r"[a-f0-9]{96}", "sha512": r"[a-f0-9]{128}"}


def oracle(text: str) -> tuple[str | None, str | None, str | None] | None:
    """(repository, tag, digest) if the text is a version this bot accepts, else None."""
    if not any(separator in text for separator in "/:@"):
        return (None, text, None) if ORACLE_TAG.fullmatch(text) else None
    match = ORACLE_REFERENCE.fullmatch(text)
    if match is None:
        return None
    name, tag_, digest = match.groups()
    name_match = ORACLE_NAME.fullmatch(name)
    assert name_match is not None
    if len(name_match.group(1)) > 255:
        return None
    if digest is not None:
        algorithm, _, hex_digits = digest.partition(":")
        if algorithm not in GO_DIGEST_HEX or not re.fullmatch(GO_DIGEST_HEX[algorithm], hex_digits):
            return None
    if tag_ is None and digest is None:
        return None  # a repository alone would mean an unpinned `latest`
    if digest is None and name in GO_DIGEST_HEX and re.fullmatch(r"[a-f0-9]{32,}", tag_ or ""):
        return None  # `sha256:<hex>` is a digest without its repository
    return name, tag_, digest


def _mutate(rng: random.Random, text: str) -> str:
    alphabet = "aZ09._-/:@[]+ "
    for _ in range(rng.randint(1, 3)):
        position = rng.randrange(len(text) + 1)
        operation = rng.choice(["insert", "delete", "replace", "cut"])
        if operation == "insert":
            text = text[:position] + rng.choice(alphabet) + text[position:]
        elif operation == "delete":
            text = text[:position] + text[position + 1 :]
        elif operation == "replace":
            text = text[:position] + rng.choice(alphabet) + text[position + 1 :]
        else:
            text = text[:position]
    return text


def test_mutated_versions_are_accepted_exactly_when_the_reference_grammar_accepts_them() -> None:
    rng = random.Random(42)
    accepted = rejected = 0
    for _ in range(20000):
        seed_text = rng.choice([_random_reference(rng)[0], _random_tag(rng), FULL_REFERENCE])
        text = _mutate(rng, seed_text)
        expected = oracle(text)
        try:
            version = parse_version(text)
        except ValueError as error:
            assert expected is None, f"{text!r} refused: {error}"
            assert str(error)
            rejected += 1
        else:
            assert (version.repository, version.tag, version.digest) == expected, text
            accepted += 1
    # Both sides of the boundary are exercised, not just one.
    assert accepted > 4000, accepted
    assert rejected > 4000, rejected


def test_a_token_pasted_into_a_command_is_never_echoed_back() -> None:
    with pytest.raises(UsageError) as raised:
        parse_command("status shop-api xoxb-1234-5678-abcdEFGH")
    assert "xoxb-1234" not in str(raised.value)
    assert "[REDACTED]" in raised.value.problem


def test_a_form_s_fields_are_read_by_the_same_grammar_one_word_each() -> None:
    assert start_command("canary", app="shop-api", version="v2", plan="fast") == StartCanary(
        app="shop-api", version=tag("v2"), plan="fast"
    )
    assert start_command("bluegreen", app="shop-api", version="v2", plan=None) == StartBlueGreen(
        app="shop-api", version=tag("v2")
    )
    for strategy, app, version, problem in (
        ("canary", "shop-api", "v2 --override now", "the version is one word"),
        ("canary", "", "", "`/release canary` needs an app name"),
        ("canary", "shop-api", "v2:", "`v2:` is not a valid version"),
        ("rollback", "shop-api", "v2", "`rollback` is not a strategy"),
    ):
        with pytest.raises(UsageError) as refused:
            start_command(strategy, app=app, version=version, plan=None)
        assert refused.value.problem.startswith(problem)
    assert start_command("hybrid", app="shop-api", version="v2", plan="fast") == StartHybrid(
        app="shop-api", version=tag("v2"), plan="fast"
    )
    assert STRATEGIES == ("canary", "bluegreen", "hybrid")
    assert takes_plan("canary") and takes_plan("hybrid") and not takes_plan("bluegreen")
