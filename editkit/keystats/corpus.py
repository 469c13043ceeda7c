"""Background corpora for key statistics: where the texts come from, and which of them.

A :class:`CorpusSpec` names a source and a sample selection. :meth:`CorpusSpec.documents`
yields the selected texts in one fixed order (so a collection can resume at a document
index), and :meth:`CorpusSpec.identity` says exactly which texts those are, for the
statistics store's lookup key.

Sources (``CorpusSpec.parse``, the ``--corpus`` syntax):

* ``PATH.txt`` — a local UTF-8 text file, one document per non-blank line;
* ``PATH.json[:FIELD]`` / ``PATH.jsonl[:FIELD]`` — a JSON list, or JSON Lines, of records
  whose ``FIELD`` (default ``text``) holds the document (a bare JSON string is a document too);
* ``hf:NAME[:CONFIG[:SPLIT]]`` — a ``datasets`` dataset, streamed (split default ``train``);
  the documented real-world default is ``hf:wikimedia/wikipedia:20231101.en``;
* ``NAME`` — a dataset registered through ``editkit_register_datasets`` whose
  :class:`~editkit.catalog.DatasetSpec` has a ``corpus`` (e.g. ``demo``).

Sample selection: with ``seed`` set, documents are shuffled first (local files: a full
permutation by :class:`random.Random`; ``hf:`` streams: ``IterableDataset.shuffle`` with a
10,000-document buffer); ``samples`` then keeps the first ``samples`` documents. No seed means
corpus order. Nothing here imports torch.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from editkit.errors import InputError, UsageError
from editkit.job.manifest import file_sha256

if TYPE_CHECKING:  # pragma: no cover
    from editkit.plugins import PluginHost

KINDS = ("text", "json", "hf", "registered")
WIKIPEDIA = "hf:wikimedia/wikipedia:20231101.en"
SHUFFLE_BUFFER = 10_000
_REGISTERED_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
_JSON_SUFFIXES = (".json", ".jsonl")


def _optional_non_negative(instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise UsageError(f"corpus {attribute.name} must be a non-negative integer, got {value!r}")


@attrs.frozen(kw_only=True)
class CorpusSpec:
    """Which background texts: a source plus a sample selection (see the module docstring)."""

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    path: str | None = None  # text / json
    name: str | None = None  # hf dataset name, or registered dataset name
    config: str | None = None  # hf only
    split: str = "train"  # hf only
    text_field: str = "text"  # json / hf / registered records
    samples: int | None = attrs.field(default=None, validator=_optional_non_negative)
    seed: int | None = attrs.field(default=None, validator=_optional_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.kind in ("text", "json") and not self.path:
            raise UsageError(f"a {self.kind} corpus needs a path")
        if self.kind in ("hf", "registered") and not self.name:
            raise UsageError(f"a {self.kind} corpus needs a name")

    # ------------------------------------------------------------------ parsing

    @classmethod
    def parse(cls, text: str, **selection: Any) -> CorpusSpec:
        """Parse the ``--corpus`` syntax; ``selection`` sets ``samples``/``seed``/``text_field``."""
        text = text.strip()
        if not text:
            raise UsageError("empty --corpus")
        if text.startswith("hf:"):
            parts = text[3:].split(":")
            if not parts[0] or len(parts) > 3:
                raise UsageError(f"--corpus {text!r}: expected hf:NAME[:CONFIG[:SPLIT]]")
            name, config, split = (*parts, None, None)[:3]
            return cls(kind="hf", name=name, config=config or None, split=split or "train", **selection)
        base, _, field = text.rpartition(":")
        if base and base.lower().endswith(_JSON_SUFFIXES) and field:
            selection = {"text_field": field, **selection}
            return cls(kind="json", path=base, **selection)
        suffix = Path(text).suffix.lower()
        if suffix in _JSON_SUFFIXES:
            return cls(kind="json", path=text, **selection)
        if suffix == ".txt":
            return cls(kind="text", path=text, **selection)
        if _REGISTERED_NAME.match(text):
            return cls(kind="registered", name=text, **selection)
        raise UsageError(
            f"--corpus {text!r}: expected PATH.txt, PATH.json[l][:FIELD], hf:NAME[:CONFIG[:SPLIT]] "
            "or the name of a registered dataset"
        )

    def describe(self) -> str:
        if self.kind == "text":
            where = str(self.path)
        elif self.kind == "json":
            where = f"{self.path}:{self.text_field}"
        elif self.kind == "hf":
            where = ":".join(p for p in ("hf", self.name, self.config, self.split) if p)
        else:
            where = str(self.name)
        extra = []
        if self.seed is not None:
            extra.append(f"shuffled with seed {self.seed}")
        if self.samples is not None:
            extra.append(f"first {self.samples} documents")
        return where + (f" ({', '.join(extra)})" if extra else "")

    # ------------------------------------------------------------------ identity

    def identity(self, host: PluginHost | None = None) -> dict[str, Any]:
        """What selects these texts, JSON-able; local files are identified by content hash."""
        selection = {"samples": self.samples, "seed": self.seed}
        if self.kind in ("text", "json"):
            path = Path(str(self.path))
            out: dict[str, Any] = {"source": self.kind, "sha256": _file_sha256(path)}  # content, not path
            if self.kind == "json":
                out["text_field"] = self.text_field
            return {**out, **selection}
        if self.kind == "hf":
            return {"source": "hf", "name": self.name, "config": self.config, "split": self.split,
                    "text_field": self.text_field, "shuffle_buffer": SHUFFLE_BUFFER if self.seed is not None else None,
                    **selection}
        host = host or _default_host()
        spec = host.catalog.get("datasets", str(self.name))  # UsageError naming the available ones
        provider = host.catalog.providers.get(("datasets", str(self.name)))
        out = {"source": "registered", "name": self.name, "provider": provider, "text_field": self.text_field}
        if spec.corpus_identity is not None:  # e.g. the content hash of a packaged file
            out["texts"] = spec.corpus_identity()
        return {**out, **selection}

    # ------------------------------------------------------------------ texts

    def documents(self, *, start: int = 0, host: PluginHost | None = None) -> Iterator[str]:
        """The selected documents from index ``start`` on (corpus order, or shuffled by ``seed``)."""
        if self.kind in ("text", "json"):
            texts: Iterable[str] = self._local_texts()
            if self.seed is not None:
                texts = list(texts)
                random.Random(self.seed).shuffle(texts)  # type: ignore[arg-type]
        elif self.kind == "hf":
            texts = self._hf_texts()
        else:
            texts = self._registered_texts(host or _default_host())
        return itertools.islice(texts, start, self.samples)

    def size(self, host: PluginHost | None = None) -> int | None:
        """How many documents :meth:`documents` yields, when that is cheap to know, else None.

        Local files are counted (non-blank lines of ``.txt`` / ``.jsonl``, records of a ``.json`` list), a
        registered corpus when it returns a sized collection (a list or tuple); an ``hf:`` stream's size is
        not known, only the ``samples`` cap. Never raises: an unreadable corpus is reported when it is read.
        """
        try:
            available = self._count(host)
        except Exception:  # progress only: reading the corpus says what is wrong with it
            available = None
        if available is None:
            return self.samples
        return available if self.samples is None else min(available, self.samples)

    def _count(self, host: PluginHost | None) -> int | None:
        if self.kind in ("text", "json"):
            path = Path(str(self.path))
            if self.kind == "json" and path.suffix.lower() != ".jsonl":
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and isinstance(data.get("data"), list):
                    data = data["data"]
                return len(data) if isinstance(data, list) else None
            with path.open(encoding="utf-8") as fh:  # blank lines are no documents (_text_lines, _jsonl_records)
                return sum(1 for line in fh if line.strip())
        if self.kind == "registered":
            spec = (host or _default_host()).catalog.get("datasets", str(self.name))
            items = spec.corpus() if spec.corpus is not None else None
            return len(items) if isinstance(items, (list, tuple)) else None
        return None

    def check(self, host: PluginHost | None = None) -> None:
        """Fail early (:class:`InputError`) if the corpus is unreadable, empty or lacks the text field."""
        first = next(iter(self.documents(host=host)), None)
        if first is None:
            raise InputError(f"corpus {self.describe()} is empty: it has no documents")

    def _local_texts(self) -> Iterator[str]:
        path = Path(str(self.path))
        if not path.is_file():
            raise InputError(f"corpus file {path} cannot be read: no such file")
        if self.kind == "text":
            return _text_lines(path)
        if path.suffix.lower() == ".jsonl":
            return (_record_text(rec, self.text_field, f"{path} line {n}") for n, rec in _jsonl_records(path))
        return self._json_texts(path)

    def _json_texts(self, path: Path) -> Iterator[str]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"corpus file {path} cannot be read: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise InputError(f"corpus file {path}: expected a JSON list of records, got {type(data).__name__}")
        return (_record_text(rec, self.text_field, f"{path} record {i}") for i, rec in enumerate(data))

    def _hf_texts(self) -> Iterator[str]:
        try:
            import datasets

            ds = datasets.load_dataset(self.name, self.config, split=self.split, streaming=True)
            if self.seed is not None:
                ds = ds.shuffle(seed=self.seed, buffer_size=SHUFFLE_BUFFER)
        except Exception as exc:  # network, unknown name/config/split: all bad input here
            raise InputError(f"cannot load dataset {self.describe()}: {type(exc).__name__}: {exc}") from None
        where = f"dataset {self.name}"
        return (_record_text(rec, self.text_field, f"{where} example {i}") for i, rec in enumerate(ds))

    def _registered_texts(self, host: PluginHost) -> Iterator[str]:
        spec = host.catalog.get("datasets", str(self.name))
        if spec.corpus is None:
            raise UsageError(f"dataset {self.name!r} provides edit requests but no text corpus")
        items = spec.corpus()
        where = f"dataset {self.name}"
        return (item if isinstance(item, str) else _record_text(item, self.text_field, f"{where} item {i}")
                for i, item in enumerate(items))


def _default_host() -> PluginHost:
    from editkit.plugins import PluginHost

    return PluginHost()


def _file_sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise InputError(f"corpus file {path} cannot be read: {exc.strerror or exc}") from None


def _text_lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"corpus file {path} cannot be read: {exc}") from None


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"corpus file {path} line {n} is not valid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"corpus file {path} cannot be read: {exc}") from None


def _record_text(record: Any, field: str, where: str) -> str:
    if isinstance(record, str):
        return record
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected an object with a {field!r} field, got {type(record).__name__}")
    if field not in record:
        fields = ", ".join(sorted(map(str, record))) or "none"
        raise InputError(f"{where} has no text field {field!r} (fields: {fields})")
    value = record[field]
    if not isinstance(value, str):
        raise InputError(f"{where}: field {field!r} is {type(value).__name__}, not text")
    return value
