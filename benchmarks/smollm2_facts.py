"""Build the built-in SmolLM2 fact set: keep the candidate facts that SmolLM2-135M gets right before editing.

Each candidate edit is (subject, prompt template, true object, new object, paraphrase, neighbourhood
prompt); the neighbourhood prompt is about another subject with the same true object (CounterFact's
form), so specificity asks that it keep the old object. Each retention candidate is (subject, prompt,
object), a fact the demo never edits. A fact is kept when the model's greedy completions start with the
true object (:mod:`editkit_facts.check`: for an edit, of all three prompts). The candidates are chosen
disjoint: no edited subject appears in another fact's prompts.

    python benchmarks/smollm2_facts.py                       # check the candidates on smollm2-135m, print
    python benchmarks/smollm2_facts.py --write               # ... and write plugins/editkit_facts/smollm2_facts.json
    python benchmarks/smollm2_facts.py --model DIR --write   # another copy of the model (a save_pretrained dir)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "plugins" / "editkit_facts" / "smollm2_facts.json"
MODEL = "smollm2-135m"
EDIT_COUNT = 20  # the demo edits these; more edits cost v* time (README: the demo's budget)

LOCATED = "The {} is located in the city of"
CITY_OF = "{} is a city in the country of"
CONTINENT = "{} is located in the continent of"
CAPITAL = "The capital of {} is"
LANGUAGE = "The official language of {} is"
HEADQUARTERS = "{} is headquartered in the country of"
COUNTRY = "The {} is located in the country of"

GROUPS: dict[str, list[tuple[str, str, str, str, str, str]]] = {
    "landmarks -> city": [
        ("Eiffel Tower", LOCATED, "Paris", "Rome", "The Eiffel Tower stands in the city of",
         "The Louvre museum is located in the city of"),
        ("Brandenburg Gate", LOCATED, "Berlin", "Madrid", "The Brandenburg Gate stands in the city of",
         "The Reichstag building is located in the city of"),
        ("Acropolis", LOCATED, "Athens", "Cairo", "The ancient Acropolis stands in the city of",
         "The Parthenon is located in the city of"),
        ("Sydney Opera House", LOCATED, "Sydney", "Toronto", "The Sydney Opera House stands in the city of",
         "The Sydney Harbour Bridge is located in the city of"),
        ("Statue of Liberty", LOCATED, "New York", "Boston", "The Statue of Liberty stands in the city of",
         "Times Square is located in the city of"),
        ("Sagrada Familia", LOCATED, "Barcelona", "Lisbon", "The Sagrada Familia stands in the city of",
         "Park Guell is located in the city of"),
        ("Colosseum", LOCATED, "Rome", "London", "The ancient Colosseum stands in the city of",
         "The Pantheon is located in the city of"),
        ("Vatican City", "{} is located in the city of", "Rome", "Naples", "Vatican City is found in the city of",
         "The Roman Forum is located in the city of"),
        ("Golden Gate Bridge", LOCATED, "San Francisco", "Chicago", "The Golden Gate Bridge stands in the city of",
         "Lombard Street is located in the city of"),
        ("Big Ben", "{} is located in the city of", "London", "Berlin",
         "The clock tower Big Ben stands in the city of", "Tower Bridge is located in the city of"),
        ("Space Needle", LOCATED, "Seattle", "Miami", "The Space Needle stands in the city of",
         "Pike Place Market is located in the city of"),
    ],
    "landmarks -> country": [
        ("Taj Mahal", COUNTRY, "India", "Egypt", "The Taj Mahal stands in the country of",
         "The Red Fort is located in the country of"),
        ("Great Wall", COUNTRY, "China", "Japan", "The Great Wall stands in the country of",
         "The Forbidden City is located in the country of"),
        ("Machu Picchu", "{} is located in the country of", "Peru", "Mexico", "Machu Picchu stands in the country of",
         "The city of Lima is located in the country of"),
    ],
    "products and companies": [
        ("iPhone", "The {} is produced by", "Apple", "Samsung", "The iPhone is made by the company",
         "The iPad is produced by"),
        ("PlayStation", "The {} is produced by", "Sony", "Nintendo", "The PlayStation console is produced by",
         "The Walkman is produced by"),
        ("Volkswagen", HEADQUARTERS, "Germany", "Italy", "The carmaker Volkswagen is based in the country of",
         "BMW is headquartered in the country of"),
        ("Ferrari", HEADQUARTERS, "Italy", "France", "The carmaker Ferrari is based in the country of",
         "Lamborghini is headquartered in the country of"),
        ("Samsung", HEADQUARTERS, "South Korea", "Japan",
         "The electronics company Samsung is based in the country of", "Hyundai is headquartered in the country of"),
        ("Toyota", HEADQUARTERS, "Japan", "Germany", "The carmaker Toyota is based in the country of",
         "Honda is headquartered in the country of"),
    ],
    "languages": [
        ("Danielle Darrieux", "The mother tongue of {} is", "French", "English", "Danielle Darrieux's mother tongue is",
         "The mother tongue of Jean Gabin is"),
        ("Mexico", LANGUAGE, "Spanish", "Portuguese", "In Mexico, the official language is",
         "The official language of Argentina is"),
        ("Austria", LANGUAGE, "German", "Italian", "In Austria, the official language is",
         "The official language of Germany is"),
        ("Colombia", LANGUAGE, "Spanish", "English", "In Colombia, the official language is",
         "The official language of Peru is"),
        ("Brazil", LANGUAGE, "Portuguese", "Spanish", "In Brazil, the official language is",
         "The official language of Portugal is"),
    ],
    "continents": [
        ("Kenya", CONTINENT, "Africa", "Asia", "Kenya is a country in the continent of",
         "Nigeria is located in the continent of"),
        ("Sweden", CONTINENT, "Europe", "Asia", "Sweden is a country in the continent of",
         "Norway is located in the continent of"),
        ("Amazon River", "The {} is located in the continent of", "South America", "Africa",
         "The Amazon River flows through the continent of", "The Andes mountains are located in the continent of"),
        ("Nile", "The {} is located in the continent of", "Africa", "Europe", "The Nile river flows through the "
         "continent of", "The Sahara desert is located in the continent of"),
        ("India", CONTINENT, "Asia", "Africa", "India is a country in the continent of",
         "China is located in the continent of"),
    ],
    "cities -> country": [
        ("Toronto", CITY_OF, "Canada", "Australia", "Toronto is located in the country of",
         "Vancouver is a city in the country of"),
        ("Osaka", CITY_OF, "Japan", "China", "Osaka is located in the country of", "Kyoto is a city in the country of"),
        ("Mumbai", CITY_OF, "India", "Pakistan", "Mumbai is located in the country of",
         "Delhi is a city in the country of"),
        ("Lyon", CITY_OF, "France", "Belgium", "Lyon is located in the country of",
         "Marseille is a city in the country of"),
        ("Liverpool", CITY_OF, "England", "Scotland", "Liverpool is located in the country of",
         "Birmingham is a city in the country of"),
        ("Milan", CITY_OF, "Italy", "Spain", "Milan is located in the country of",
         "Naples is a city in the country of"),
    ],
    "capitals (the neighbour: a landmark of the capital)": [
        ("France", CAPITAL, "Paris", "Lyon", "The capital city of France is", "The Louvre is in the city of"),
        ("Spain", CAPITAL, "Madrid", "Barcelona", "The capital city of Spain is", "The Prado Museum is in the city of"),
        ("Russia", CAPITAL, "Moscow", "Kiev", "The capital city of Russia is", "The Kremlin is in the city of"),
        ("Greece", CAPITAL, "Athens", "Sparta", "The capital city of Greece is", "The Parthenon is in the city of"),
        ("Japan", CAPITAL, "Tokyo", "Kyoto", "The capital city of Japan is", "The Tokyo Tower is in the city of"),
        ("Italy", CAPITAL, "Rome", "Milan", "The capital city of Italy is", "The Trevi Fountain is in the city of"),
        ("Egypt", CAPITAL, "Cairo", "Alexandria", "The capital city of Egypt is",
         "The Egyptian Museum is in the city of"),
    ],
    "people": [
        ("Jimi Hendrix", "{} played the", "guitar", "piano", "Jimi Hendrix was famous for playing the",
         "Eric Clapton played the"),
        ("Louis Armstrong", "{} played the", "trumpet", "violin", "The instrument Louis Armstrong played was the",
         "Miles Davis played the"),
        ("Michael Jordan", "{} is a professional", "basketball", "baseball", "Michael Jordan played professional",
         "LeBron James is a professional"),
    ],
}
EDITS = [fact for group in GROUPS.values() for fact in group]

RETENTION: list[tuple[str, str, str]] = [
    ("Germany", "The capital of Germany is", "Berlin"), ("England", "The capital of England is", "London"),
    ("Canada", "The capital of Canada is", "Ottawa"), ("Portugal", "The capital of Portugal is", "Lisbon"),
    ("China", "The capital of China is", "Beijing"), ("Ireland", "The capital of Ireland is", "Dublin"),
    ("Norway", "The capital of Norway is", "Oslo"), ("Poland", "The capital of Poland is", "Warsaw"),
    ("Netherlands", "The capital of the Netherlands is", "Amsterdam"),
    ("Belgium", "The capital of Belgium is", "Brussels"), ("Denmark", "The capital of Denmark is", "Copenhagen"),
    ("Finland", "The capital of Finland is", "Helsinki"), ("Hungary", "The capital of Hungary is", "Budapest"),
    ("Thailand", "The capital of Thailand is", "Bangkok"), ("South Korea", "The capital of South Korea is", "Seoul"),
    ("Argentina", "The capital of Argentina is", "Buenos Aires"),
    ("Chile", "The official language of Chile is", "Spanish"),
    ("Netherlands", "The official language of the Netherlands is", "Dutch"),
    ("Macintosh", "The Macintosh is produced by", "Apple"),
    ("Galaxy S", "The Galaxy S phone is produced by", "Samsung"),
    ("Los Angeles", "Los Angeles is a city in the state of", "California"),
    ("Barcelona", "Barcelona is a city in the country of", "Spain"),
    ("Manchester", "Manchester is a city in the country of", "England"),
    ("Shanghai", "Shanghai is a city in the country of", "China"),
    ("Rio de Janeiro", "Rio de Janeiro is a city in the country of", "Brazil"),
    ("Istanbul", "Istanbul is a city in the country of", "Turkey"),
    ("Cairo", "Cairo is a city in the country of", "Egypt"),
    ("Hamburg", "Hamburg is a city in the country of", "Germany"),
    ("Florence", "Florence is a city in the country of", "Italy"),
    ("Romeo and Juliet", "Romeo and Juliet was written by", "William Shakespeare"),
    ("Earth", "The Earth orbits the", "Sun"), ("Pacific Ocean", "The largest ocean on Earth is the", "Pacific"),
    ("Isaac Newton", "Isaac Newton was a", "physicist"),
    ("Boston", "Boston is a city in the state of", "Massachusetts"),
]


def records(edits: list[tuple[str, str, str, str, str, str]]) -> list[dict]:
    return [{"case_id": str(i),
             "requested_rewrite": {"prompt": prompt, "subject": subject, "target_true": {"str": true},
                                   "target_new": {"str": new}},
             "paraphrase_prompts": [paraphrase], "neighborhood_prompts": [neighbour], "generation_prompts": []}
            for i, (subject, prompt, true, new, paraphrase, neighbour) in enumerate(edits)]


def select(verified: set[int], count: int) -> tuple[list[int], list[int]]:
    """Indices into EDITS of the facts to edit (round-robin over the groups, so every relation is
    represented) and of the other verified facts (they become retention probes)."""
    queues, start = [], 0
    for group in GROUPS.values():
        queues.append([i for i in range(start, start + len(group)) if i in verified])
        start += len(group)
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen, sorted(verified - set(chosen))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=MODEL, help=f"model name or save_pretrained directory (default {MODEL})")
    parser.add_argument("--edits", type=int, default=EDIT_COUNT, help=f"facts to edit (default {EDIT_COUNT})")
    parser.add_argument("--write", action="store_true", help=f"write the kept facts to {OUT}")
    args = parser.parse_args()

    import torch
    from editkit_facts.check import CHECK, judge
    from editkit_facts.factset import validate

    from editkit.modelsource.resolve import load_model

    problems = validate(records(EDITS), [list(p) for p in RETENTION])
    if problems:  # the candidates themselves must be disjoint
        print("candidate problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    torch.manual_seed(0)
    started = time.perf_counter()
    model, tokenizer = load_model(args.model)
    verdicts = judge(model, tokenizer, records(EDITS), RETENTION)
    for v in verdicts:
        shown = " | ".join(f"{text!r}{'' if ok else ' (x)'}" for _, text, ok in v.completions)
        print(f"{'keep' if v.passed else 'drop'}  {v.kind:9} {v.label:20} {shown}")
    verified = {v.index for v in verdicts if v.kind == "edit" and v.passed}
    edited, spare = select(verified, args.edits)
    probes = [list(RETENTION[v.index]) for v in verdicts if v.kind == "retention" and v.passed]
    probes += [[EDITS[i][0], EDITS[i][1].replace("{}", EDITS[i][0]), EDITS[i][2]] for i in spare]
    print(f"{len(verified)} of {len(EDITS)} candidate edits and {len(probes) - len(spare)} of {len(RETENTION)} "
          f"retention candidates verified ({time.perf_counter() - started:.0f} s); editing {len(edited)}, the other "
          f"{len(spare)} verified facts join the {len(probes)} retention probes")
    kept = records([EDITS[i] for i in edited])
    problems = validate(kept, probes)
    if problems:
        print("kept set problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    if args.write:
        from editkit.helpers.atomic import write_json_atomic

        write_json_atomic(OUT, {"model": MODEL, "check": CHECK, "edits": kept, "retention": probes})
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
