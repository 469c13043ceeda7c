"""The general-capability and perplexity metrics against hand-computed values on a
"prefix-sum" model whose next-token distribution is known, their score formulas against independent
computations, and bad data named by file and line."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from editkit_metrics.choice import candidate_logprobs, text_nll
from editkit_metrics.classification import accuracy, matthews, weighted_f1
from editkit_metrics.general import general_capability
from editkit_metrics.general_tasks import TASKS
from editkit_metrics.options import GENERAL_ENV, PERPLEXITY_ENV, GeneralOptions, MetricDataWarning, PerplexityOptions
from editkit_metrics.perplexity import perplexity, read_texts

from editkit.errors import InputError, UsageError
from editkit.evaluation import EvalContext
from editkit.helpers.metricoptions import parse_metric_options
from editkit.helpers.scoring import continuation_scores
from editkit.helpers.tokens import tokenize
from editkit.plugins import PluginHost
from editkit.testing.tiny import tiny_model, tiny_tokenizer


class PrefixSum(torch.nn.Module):
    """logits[b, t] = table[(Σ_{s ≤ t} input_ids[b, s]) mod V]: causal, and every prefix counts."""

    def __init__(self, vocab: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g, dtype=torch.float64) * 3)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        keys = torch.cumsum(input_ids * mask, dim=1) % self.table.shape[0]
        return type("Out", (), {"logits": self.table[keys]})()


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def logprob(model, ids, t):
    """log P(ids[t] | ids[:t]) straight from the table."""
    key = sum(ids[:t]) % model.table.shape[0]
    return float(torch.log_softmax(model.table.detach()[key], dim=-1)[ids[t]])


def mean_logprob(model, tok, prompt, candidate):
    ids = tokenize(tok, prompt + candidate).ids
    n_prompt = len(tokenize(tok, prompt).ids)
    return sum(logprob(model, ids, t) for t in range(n_prompt, len(ids))) / (len(ids) - n_prompt)


SST2 = [("the film is thrilling", 1), ("a dull movie", 0), ("Paris is the capital", 1), ("the lazy dog", 0),
        ("Apple was founded", 1), ("the quick brown fox jumps", 0), ("Edwin Hubble was an astronomer", 1)]
MMLU = [("Which city is in France?", ["Paris", "Apple", "Jobs", "Messi"], 0),
        ("Who plays football?", ["Hubble", "Messi", "Jordan", "Yasuda"], 1),
        ("What is the mother tongue?", ["French", "English", "German", "Dutch"], 3),
        ("Who was an astronomer?", ["Jordan", "Jobs", "Hubble", "Paris"], 2)]
COLA = [("The cat the cat.", 1), ("Paris is in France.", 1), ("Is France Paris the.", 0), ("I you we they.", 0),
        ("Steve Jobs founded Apple.", 1)]


def write_tasks(directory, *, pool: int = 1):
    """sst2, mmlu and cola files, each with ``pool`` leading items (the offset skips them)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [{"sentence": "pool item", "label": 0}] * pool + [{"sentence": s, "label": y, "idx": i}
                                                              for i, (s, y) in enumerate(SST2)]
    (directory / "sst2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    lines = [{"question": "pool?", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 0}] * pool
    lines += [{"question": q, "subject": "x", "choices": c, "answer": a} for q, c, a in MMLU]
    (directory / "mmlu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    lines = [{"sentence": "pool item", "label": 0}] * pool + [{"sentence": s, "label": y} for s, y in COLA]
    (directory / "cola.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return directory


def context(model, tok, **extras):
    return EvalContext(model=model, tokenizer=tok, records=[], extras=extras)


def expected_predictions(model, tok, task, items):
    out = []
    for record in items:
        prompt, _ = task.read(record)
        scores = [mean_logprob(model, tok, prompt, c) for c in task.candidates]
        out.append(max(range(len(scores)), key=lambda j: (scores[j], -j)))
    return out


def test_general_scores_match_hand_computation(tok, tmp_path):
    model = PrefixSum(len(tok))
    data = write_tasks(tmp_path / "general")
    options = GeneralOptions(data=str(data), tasks="sst2,mmlu,cola", offset=1)
    got = general_capability(context(model, tok, metric_options={"general": options}))
    sst2 = expected_predictions(model, tok, TASKS["sst2"], [{"sentence": s, "label": y} for s, y in SST2])
    sst2_true = [0 if y == 1 else 1 for _, y in SST2]  # candidate index: " positive" is 0
    mmlu = expected_predictions(model, tok, TASKS["mmlu"],
                                [{"question": q, "choices": c, "answer": a} for q, c, a in MMLU])
    cola = expected_predictions(model, tok, TASKS["cola"], [{"sentence": s, "label": y} for s, y in COLA])
    cola_true = [0 if y == 1 else 1 for _, y in COLA]
    assert len(set(sst2)) == 2 and len(set(mmlu)) > 1 and len(set(cola)) == 2  # the model's answers vary
    assert got["general_sst2_f1"] == pytest.approx(100 * independent_weighted_f1(sst2_true, sst2))
    assert got["general_mmlu_acc"] == pytest.approx(100 * sum(p == a for p, (_, _, a) in zip(mmlu, MMLU)) / 4)
    assert got["general_cola_mcc"] == pytest.approx(100 * independent_mcc([1 - y for y in cola_true],
                                                                          [1 - p for p in cola]))
    assert set(got) == {"general_sst2_f1", "general_mmlu_acc", "general_cola_mcc"}
    # limit: the first N items after the offset
    limited = general_capability(context(model, tok, metric_options={"general": GeneralOptions(
        data=str(data), tasks="mmlu", offset=1, limit=2)}))
    assert limited["general_mmlu_acc"] == pytest.approx(100 * sum(p == a for p, (_, _, a) in zip(mmlu[:2], MMLU))
                                                        / 2)


def test_candidate_logprobs_agree_with_the_kernel_scorer(tok):
    """One sequence per item for one-token candidates, one per candidate otherwise; either padding side."""
    items = [("The mother tongue of Danielle Darrieux is", [" French", " English", " German Italian"]),
             ("Paris is the capital of", [" France", " Paris"]),
             ("Steve Jobs founded", [" Apple", " the quick brown fox"])]
    for side in ("right", "left"):
        tk = tiny_tokenizer(padding_side=side)
        model = tiny_model("gpt2", vocab_size=len(tk), n_layers=2, d_model=32, d_mlp=64, logit_scale=5).double()
        got = candidate_logprobs(model, tk, items, budget=40)  # small budget: several batches
        for (prompt, candidates), scores in zip(items, got):
            ref = continuation_scores(model, tk, [prompt] * len(candidates), candidates)
            assert scores == pytest.approx([float(lp.mean()) for lp, _ in ref], abs=1e-6)  # the kernel's: float32


def test_score_formulas_against_independent_computations():
    # scikit-learn's documented examples
    assert weighted_f1([0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1]) == pytest.approx(0.26666666666666666)
    assert matthews([1, 1, 1, 0], [1, 0, 1, 1]) == pytest.approx(-1 / 3)
    assert matthews([1, 1, 0, 0], [1, 1, 1, 1]) == 0.0  # a constant prediction: no correlation, not NaN
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = torch.randint(0, 2, (30,), generator=g).tolist()
        p = torch.randint(0, 2, (30,), generator=g).tolist()
        assert matthews(y, p) == pytest.approx(independent_mcc(y, p))
        assert accuracy(y, p) == pytest.approx(sum(a == b for a, b in zip(y, p)) / 30)
        y4 = torch.randint(0, 4, (30,), generator=g).tolist()
        p4 = torch.randint(0, 3, (30,), generator=g).tolist()  # class 3 never predicted
        assert weighted_f1(y4, p4) == pytest.approx(independent_weighted_f1(y4, p4))


def independent_mcc(y, p):
    """MCC is the Pearson correlation of the two 0/1 vectors."""
    return float(torch.corrcoef(torch.tensor([y, p], dtype=torch.float64))[0, 1])


def independent_weighted_f1(y, p):
    """Through the confusion matrix: F1_c = harmonic mean of precision and recall, weighted by support."""
    k = max(y + p) + 1
    m = torch.zeros(k, k, dtype=torch.float64)
    for a, b in zip(y, p):
        m[a, b] += 1
    total = 0.0
    for c in range(k):
        support, predicted, hit = float(m[c].sum()), float(m[:, c].sum()), float(m[c, c])
        precision = hit / predicted if predicted else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total += support * f1
    return total / len(y)


def test_perplexity_is_token_weighted_over_every_predicted_token(tok, tmp_path):
    model = PrefixSum(len(tok), seed=1)
    texts = ["Paris is the capital of France.", "The quick brown fox jumps over the lazy dog again and again.",
             "Apple", "Edwin Hubble was an astronomer."]
    path = tmp_path / "ppl.json"
    path.write_text(json.dumps([{"Corpus": "x", "Text": t} for t in texts]))
    got = perplexity(context(model, tok, metric_options={"perplexity": PerplexityOptions(data=str(path))}))
    nll, count = 0.0, 0
    for text in texts:
        ids = tokenize(tok, text).ids
        nll -= sum(logprob(model, ids, t) for t in range(1, len(ids)))
        count += len(ids) - 1
    assert got["perplexity_tokens"] == count and got["perplexity_texts"] == 4
    assert got["perplexity"] == pytest.approx(math.exp(nll / count))
    # not the mean of per-text perplexities: the texts differ in length
    per_text = [math.exp(-sum(logprob(model, tokenize(tok, t).ids, s) for s in range(1, len(tokenize(tok, t).ids)))
                         / (len(tokenize(tok, t).ids) - 1)) for t in texts if len(tokenize(tok, t).ids) > 1]
    assert abs(sum(per_text) / len(per_text) - got["perplexity"]) > 1e-3
    # held out: offset and limit choose the texts; max_length cuts them
    part = perplexity(context(model, tok, metric_options={"perplexity": PerplexityOptions(
        data=str(path), offset=1, limit=1, max_length=5)}))
    ids = tokenize(tok, texts[1]).ids[:5]
    assert part["perplexity_tokens"] == 4
    assert part["perplexity"] == pytest.approx(math.exp(-sum(logprob(model, ids, t) for t in range(1, 5)) / 4))
    nll_rows = text_nll(model, tok, [tokenize(tok, t).ids for t in texts], budget=8)
    assert sum(n for _, n in nll_rows) == count


def test_text_files_of_each_form(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n\n{"text": "two"}\n')
    (tmp_path / "b.txt").write_text("one\n\ntwo\nthree\n")
    (tmp_path / "c.json").write_text('["one", "two"]')
    assert read_texts(tmp_path / "a.jsonl", None, offset=0, limit=0) == ["one", "two"]
    assert read_texts(tmp_path / "b.txt", None, offset=1, limit=1) == ["two"]
    assert read_texts(tmp_path / "c.json", None, offset=0, limit=5) == ["one", "two"]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.json", '[{"Text": "fine"}, {"Corpus": "x"}]', "bad.json record 1: no text field 'text/Text'"),
    ("bad.jsonl", '{"text": "fine"}\n{"text": 3}\n', "bad.jsonl line 2: expected a non-empty text, got 3"),
    ("bad2.jsonl", '{"text": "fine"}\n{"text": \n', "bad2.jsonl line 2: not JSON"),
])
def test_bad_perplexity_data_names_file_and_entry(tok, tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match="perplexity") as info:
        perplexity(context(PrefixSum(len(tok)), tok,
                           metric_options={"perplexity": PerplexityOptions(data=str(tmp_path / name))}))
    assert message in str(info.value)


@pytest.mark.parametrize(("line", "message"), [
    ('{"sentence": "fine", "label": 2}', "sst2.jsonl line 3: label: expected one of 1, 0, got 2"),
    ('{"label": 1}', "sst2.jsonl line 3: sentence: expected a non-empty string, got None"),
    ('{"sentence": "x", "label": true}', "sst2.jsonl line 3: label: expected one of 1, 0, got True"),
    ('{"sentence": "x", "label": 1', "sst2.jsonl line 3: not a JSON object"),
    ('["x", 1]', "sst2.jsonl line 3: expected a JSON object, got list"),
])
def test_bad_task_data_names_file_line_and_field(tok, tmp_path, line, message):
    data = write_tasks(tmp_path / "general")
    lines = (data / "sst2.jsonl").read_text().splitlines()
    lines[2] = line
    (data / "sst2.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        general_capability(context(PrefixSum(len(tok)), tok, metric_options={"general": GeneralOptions(
            data=str(data), tasks="sst2", offset=1)}))
    assert message in str(info.value) and str(data) in str(info.value)


def test_missing_data_is_skipped_with_one_warning_and_a_wrong_location_is_an_error(tok, tmp_path, monkeypatch):
    monkeypatch.delenv(GENERAL_ENV, raising=False)
    monkeypatch.delenv(PERPLEXITY_ENV, raising=False)
    model = PrefixSum(len(tok))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert general_capability(context(model, tok)) == {}
        assert perplexity(context(model, tok)) == {}
    messages = [str(w.message) for w in record if issubclass(w.category, MetricDataWarning)]
    assert len(messages) == 2
    assert "general: no data" in messages[0] and GENERAL_ENV in messages[0]
    assert "perplexity: no data" in messages[1] and PERPLEXITY_ENV in messages[1]
    monkeypatch.setenv(GENERAL_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match=rf"general: \${GENERAL_ENV} .*nowhere: no such file or directory"):
        general_capability(context(model, tok))
    data = write_tasks(tmp_path / "general", pool=10)  # the default offset skips the reference's pool of 10
    monkeypatch.setenv(GENERAL_ENV, str(data))  # the environment gives the directory; a task file is missing
    with pytest.raises(InputError, match=r"mrpc\.jsonl: no such file \(the mrpc task"):
        general_capability(context(model, tok))


def test_metric_options_are_checked_before_any_work():
    metrics = PluginHost().catalog.entries["metrics"]
    selected = ["counterfact", "general", "perplexity"]
    got = parse_metric_options(["general.limit=100", "general.data=/x", "perplexity.offset=2"], metrics, selected)
    assert got == {"general": {"limit": "100", "data": "/x"}, "perplexity": {"offset": "2"}}
    for items, message in [
        (["limit=100"], "expects METRIC.KEY=VALUE"),
        (["general.limit"], "expects METRIC.KEY=VALUE"),
        (["nosuch.limit=1"], "unknown metric 'nosuch'"),
        (["fluency.limit=1"], "metric 'fluency' is not evaluated in this run"),
        (["counterfact.limit=1"], "metric 'counterfact' has no option 'limit'; it takes no options"),
        (["general.limt=1"], "metric 'general' has no option 'limt'; valid: general.data, general.tasks"),
        (["general.limit=many"], "general.limit: cannot use 'many'"),
        (["general.limit=-1"], "limit: expected >= 0"),
        (["general.tasks=sst2,glue"], "expected 'all' or a comma list of sst2"),
        (["perplexity.max_length=0"], "max_length: expected >= 1"),
    ]:
        with pytest.raises(UsageError, match="--metric-option") as info:
            parse_metric_options(items, metrics, selected)
        assert message in str(info.value), str(info.value)
