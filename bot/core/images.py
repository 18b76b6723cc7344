"""The image reference grammar: what `<version>` may be, and its parts.

Used by the `/release` grammar (bot.core.commands), preflight and the workloads (bot.kube), which
put a bare tag on the app's current image repository. Pure.

`<version>` follows github.com/distribution/reference: a bare image tag, or a full reference
`[registry[:port]/]path[:tag][@digest]` naming a tag or a digest (a bare repository would mean
an unpinned `latest`). Digests follow github.com/opencontainers/go-digest: sha256, sha384 or
sha512 in lower-case hex of the algorithm's exact length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHOWN_LENGTH = 60


def shown(text: str) -> str:
    """User text quoted in a message, cut short so a pasted blob does not flood the reply."""
    return text if len(text) <= SHOWN_LENGTH else f"{text[:SHOWN_LENGTH]}..."


_MAX_TAG_LENGTH = 128
_MAX_PATH_LENGTH = 255
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TAG_CHARACTERS = re.compile(r"[A-Za-z0-9_.-]*")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_NAME = re.compile(rf"(?:{_DOMAIN}/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)")
_DIGEST = re.compile(
    r"(?P<algorithm>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):(?P<hex>.*)"
)
_DIGEST_HEX_DIGITS = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]*")
EXAMPLE_REFERENCE = "ghcr.io/acme/shop-api:v2.4.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageVersion:
    """What `<version>` named: a bare tag, or a full image reference with a tag and/or digest."""

    text: str
    """Exactly as typed (after Slack unescaping)."""
    repository: str | None
    """`[registry[:port]/]path`; None when only a tag was given (the app's own image)."""
    tag: str | None
    digest: str | None
    """`algorithm:hex`, e.g. `sha256:...`."""

    @property
    def is_tag(self) -> bool:
        """True for a bare tag, to be put on the app's current image repository."""
        return self.repository is None

    @property
    def label(self) -> str:
        """The pods' version label value for it: the tag, else `<algorithm>-<12 hex digits>`."""
        if self.tag:
            return self.tag
        algorithm, _, hex_digest = (self.digest or "").partition(":")
        return f"{algorithm}-{hex_digest[:12]}"

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> ImageVersion:
    """Read `<version>`; ValueError says precisely which part is malformed and how."""
    if not text:
        raise ValueError("the version is empty")
    if not any(separator in text for separator in "/:@"):
        _check_tag(text)
        return ImageVersion(text=text, repository=None, tag=text, digest=None)
    name_and_tag, at, digest = text.partition("@")
    if at:
        _check_digest(digest)
    name, tag = _split_tag(name_and_tag)
    if tag is not None:
        _check_tag(tag)
    _check_repository(name, tag=tag, digest=digest if at else None)
    return ImageVersion(text=text, repository=name, tag=tag, digest=digest if at else None)


def _split_tag(name_and_tag: str) -> tuple[str, str | None]:
    """A ':' after the last '/' starts the tag; any other ':' belongs to a registry's port."""
    colon = name_and_tag.rfind(":")
    if colon > name_and_tag.rfind("/"):
        return name_and_tag[:colon], name_and_tag[colon + 1 :]
    return name_and_tag, None


def _check_tag(tag: str) -> None:
    if not tag:
        raise ValueError("the tag after ':' is empty")
    if len(tag) > _MAX_TAG_LENGTH:
        raise ValueError(f"a tag has at most {_MAX_TAG_LENGTH} characters, this one has {len(tag)}")
    if _TAG_CHARACTERS.fullmatch(tag) is None:
        raise ValueError(
            f"the tag `{shown(tag)}` may contain only letters, digits, '_', '.' and '-'"
        )
    if _TAG.fullmatch(tag) is None:
        raise ValueError(f"the tag `{shown(tag)}` must start with a letter, digit or '_'")


def _check_digest(digest: str) -> None:
    if not digest:
        raise ValueError("the digest after '@' is empty")
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise ValueError(
            f"the digest `{shown(digest)}` must be `sha256:` followed by 64 hex digits"
        )
    algorithm, hex_digits = match["algorithm"], match["hex"]
    expected_length = _DIGEST_HEX_DIGITS.get(algorithm)
    if expected_length is None:
        raise ValueError(
            f"unsupported digest algorithm `{algorithm}`: use {', '.join(_DIGEST_HEX_DIGITS)}"
        )
    if _LOWER_HEX.fullmatch(hex_digits) is None:
        raise ValueError(f"the {algorithm} digest must be lower-case hex digits (0-9, a-f)")
    if len(hex_digits) != expected_length:
        raise ValueError(
            f"a {algorithm} digest has {expected_length} hex digits, this one has {len(hex_digits)}"
        )


def _check_repository(name: str, *, tag: str | None, digest: str | None) -> None:
    if not name:
        raise ValueError(f"the image repository is missing, e.g. `{EXAMPLE_REFERENCE}`")
    if digest is None and tag is not None and _looks_like_digest(name, tag):
        raise ValueError(
            f"a digest alone is not a version: put the repository before it, e.g. "
            f"`ghcr.io/acme/shop-api@{name}:{tag}`"
        )
    match = _NAME.fullmatch(name)
    if match is None:
        if _NAME.fullmatch(name.lower()) is not None:
            raise ValueError(f"the repository `{shown(name)}` must be lower-case")
        raise ValueError(
            f"`{shown(name)}` is not an image repository: lower-case path components of "
            "letters and digits joined by '.', '_', '__' or '-', separated by '/', after an "
            f"optional registry host[:port], e.g. `{EXAMPLE_REFERENCE}`"
        )
    if len(match["path"]) > _MAX_PATH_LENGTH:
        raise ValueError(
            f"a repository path has at most {_MAX_PATH_LENGTH} characters, this one has "
            f"{len(match['path'])}"
        )
    if tag is None and digest is None:
        raise ValueError(
            f"a repository alone names no version: add a tag (`{shown(name)}:v2.4.1`) or a "
            f"digest (`{shown(name)}@sha256:...`)"
        )


def _looks_like_digest(name: str, tag: str) -> bool:
    return name in _DIGEST_HEX_DIGITS and len(tag) >= 32 and _LOWER_HEX.fullmatch(tag) is not None
