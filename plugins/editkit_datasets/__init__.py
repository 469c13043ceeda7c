"""First-party plugin: the real editing datasets (CounterFact, ZsRE, KnowEdit) as datasets.

``--dataset counterfact|zsre|knowedit`` uses the cached official file (downloaded once when the
network allows); ``--dataset PATH`` reads a local JSON file in any of the supported formats,
detected from the fields of each record.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import DatasetSpec, hookimpl


def _loader(name: str):
    def load(source: str | None = None, **options):
        from editkit_datasets.reader import read_records
        from editkit_datasets.sources import resolve

        return read_records(resolve(name, source), **options)

    return load


DATASETS = (
    DatasetSpec(name="counterfact", summary="CounterFact (ROME/MEMIT record format or EasyEdit split format)",
                load=_loader("counterfact")),
    DatasetSpec(name="zsre", summary="ZsRE in the MEND format; target = answers[0] (option target=alt)",
                load=_loader("zsre")),
    DatasetSpec(name="knowedit", summary="KnowEdit ZsRE / wiki_counterfact / wiki_recent, with portability and "
                "locality prompts", load=_loader("knowedit")),
)


@hookimpl
def editkit_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    for spec in DATASETS:
        register(spec)
