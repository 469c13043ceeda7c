"""The key statistics a run asks for: C0 = E[k kᵀ] per edit site, and its eigendecomposition.

:class:`KeyStatistics` answers ``second_moment(site)`` from memory, else from the store
(``stats_dir``), else by collecting it; ``prepare(sites)`` collects every missing site in one
pass over the corpus. Collected statistics are written to the store (rank 0 only under
``torchrun``), and the eigendecomposition of C0 is cached next to them.

Memory: C0 as stored (``Σ k kᵀ``, float32 ``[d_in, d_in]``) is held for every prepared site; the float64 mean
moment and the eigenvectors (``d_in × d_in`` float64 each) are held for one site at a time, the last asked for,
wherever they can be had again (the moment from the stored sums, the eigenvectors from the store's cache): a run
over n edited layers holds two float64 ``d_in²`` matrices, not 2n (:func:`editkit.memory.run_memory`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from editkit.errors import UsageError
from editkit.keystats.collect import CollectionPlan, CollectionResult, ResumeState, collect
from editkit.keystats.collection_progress import collection_progress
from editkit.keystats.corpus import CorpusSpec
from editkit.keystats.defaults import describe_budget
from editkit.keystats.distributed import DistContext
from editkit.keystats.identity import model_identity, site_identity
from editkit.keystats.reuse import Candidate, choose, closest
from editkit.keystats.spectrum import DEFAULT_THRESHOLD, SpectrumSummary
from editkit.keystats.store import OLDER_FORMAT, OlderStatisticsError, StatsStore, StoredStatistics, statistics_sha256

if TYPE_CHECKING:  # pragma: no cover
    from editkit.layout import ModelLayout
    from editkit.plugins import PluginHost
    from editkit.sites import Site

DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHUNK_BATCHES = 8
MIN_BATCH_TOKENS = 8192
DEFAULT_MAX_LENGTH_CAP = 4096  # long-context models: truncate documents here unless told otherwise


def dtype_name(dtype: torch.dtype) -> str:
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise UsageError(f"key statistics accumulate in float32 or float64, not {dtype}")


def model_context(model: torch.nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def mean_moment(stats: StoredStatistics, device: torch.device | str = "cpu") -> torch.Tensor:
    """C0 = Σ k kᵀ / N in float64 ``[d_in, d_in]``: one new matrix (a copy, divided in place)."""
    return stats.total.to(device=device, dtype=torch.float64, copy=True).div_(stats.count)


def eigendecompose(stats: StoredStatistics, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``eigh`` of the mean moment in float64: eigenvalues ascending [d_in], eigenvectors [d_in, d_in]."""
    moment = mean_moment(stats, device)
    eigenvalues, eigenvectors = torch.linalg.eigh(moment)
    return eigenvalues.to("cpu"), eigenvectors.to("cpu")


def cached_eigendecomposition(
    stats: StoredStatistics, store: StatsStore | None, *, write: bool = True, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigendecomposition from the store's cache, else computed (and cached when ``write``)."""
    eigenvalues, eigenvectors, _ = _eigh_through_store(stats, store, write=write, device=device)
    return eigenvalues, eigenvectors


def _eigh_through_store(stats: StoredStatistics, store: StatsStore | None, *, write: bool,
                        device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """:func:`cached_eigendecomposition`, and whether the store's cache now holds it (read from it or written)."""
    if store is not None and stats.path is not None:
        cached = store.load_eigh(stats)
        if cached is not None:
            return *cached, True
    eigenvalues, eigenvectors = eigendecompose(stats, device)
    if store is not None and stats.path is not None and write:
        store.save_eigh(stats, eigenvalues, eigenvectors)
        return eigenvalues, eigenvectors, True
    return eigenvalues, eigenvectors, False


class KeyStatistics:
    """Background key statistics of one model over one corpus selection.

    :param model: the (unedited) causal LM; collection runs on its device.
    :param tokenizer: its tokenizer.
    :param layout: the model's :class:`~editkit.layout.ModelLayout` (sites come from it).
    :param corpus: which texts (:class:`~editkit.keystats.corpus.CorpusSpec`).
    :param stats_dir: the store's root; None keeps everything in memory.
    :param max_length: truncation length per document (default: the model's context, at most 4096).
    :param max_tokens: token budget (default: every selected document).
    :param dtype: accumulation dtype, ``torch.float32`` (default) or ``torch.float64``.
    :param model_id: the model's name in identities and in the store's folder names.
    :param progress: show a rich progress bar while collecting.
    :param batch_tokens: padded tokens per forward batch (default max(3 × max_length, 8192)).
    :param checkpoint_seconds: how often a collection checkpoints (with ``stats_dir``).
    :param host: plugin host for registered corpora (a fresh one by default).
    :param distributed: the process group context (default: the initialised group, if any).
    :param report: called with one line when statistics are reused from the store or collected
        (and, then, why stored files did not match); None says nothing.

    A stored file is reused when it matches every key field and holds at least the tokens asked
    for (:mod:`editkit.keystats.reuse`): ``max_tokens`` is a minimum. A file with exactly the sums a
    collection now would give is preferred; failing that, a larger collection over the same corpus
    selection is used as it is (:meth:`provenance` gives its real count).
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        layout: ModelLayout,
        corpus: CorpusSpec,
        stats_dir: Path | str | None = None,
        max_length: int | None = None,
        max_tokens: int | None = None,
        dtype: torch.dtype = torch.float32,
        model_id: str = "",
        progress: bool = False,
        batch_tokens: int | None = None,
        checkpoint_seconds: float = 300.0,
        host: PluginHost | None = None,
        distributed: DistContext | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.layout = layout
        self.corpus = corpus
        self.dtype = dtype
        self.dtype_name = dtype_name(dtype)
        context = model_context(model)
        if max_length is None:
            if context is None:
                raise UsageError("the model's config names no context length; give max_length")
            max_length = min(context, DEFAULT_MAX_LENGTH_CAP)
        if max_length < 1 or (context is not None and max_length > context):
            raise UsageError(f"max_length must be between 1 and the model's context ({context}), got {max_length}")
        if max_tokens is not None and max_tokens < 1:
            raise UsageError(f"max_tokens must be positive, got {max_tokens}")
        self.max_length = int(max_length)
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.batch_tokens = int(batch_tokens or max(3 * self.max_length, MIN_BATCH_TOKENS))
        if self.batch_tokens < 1:
            raise UsageError(f"batch_tokens must be positive, got {batch_tokens}")
        self.model_id = model_id
        self.progress = progress
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.store = StatsStore(root=Path(stats_dir)) if stats_dir is not None else None
        self.dist = distributed or DistContext.current()
        self._host = host
        self._model_identity: dict[str, Any] | None = None
        self._corpus_identity: dict[str, Any] | None = None
        self._stats: dict[str, StoredStatistics] = {}
        self._moment: tuple[str, torch.Tensor] | None = None  # (module, C0 float64): the last one asked for
        self._eigh: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # the last one, or each without a cache file
        self._eigh_stored: set[str] = set()  # modules whose eigendecomposition the store's cache holds
        self.last_collection: CollectionResult | None = None
        self._report = report
        self._reused: set[str] = set()

    # ------------------------------------------------------------------ identity

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            from editkit.plugins import PluginHost

            self._host = PluginHost()
        return self._host

    def identity(self, site: Site) -> dict[str, Any]:
        """Exactly what the statistics of ``site`` depend on (JSON-able; the store's lookup key)."""
        if self._model_identity is None:
            self._model_identity = model_identity(self.model, self.tokenizer, self.model_id)
        if self._corpus_identity is None:
            host = self.host if self.corpus.kind == "registered" else None
            self._corpus_identity = self.corpus.identity(host)
        return site_identity(
            model=self._model_identity, module=site.module, layer=site.layer, d_in=site.d_in,
            corpus=self._corpus_identity, max_length=self.max_length, max_tokens=self.max_tokens,
            dtype=self.dtype_name,
        )

    # ------------------------------------------------------------------ statistics

    def prepare(self, sites: Iterable[Site]) -> None:
        """Make every site's statistics available, collecting all missing ones in one pass."""
        missing: list[Site] = []
        reused: list[Site] = []
        candidates: list[Candidate] | None = None
        refused: list[tuple[Path, str]] = []
        for site in sites:
            if site.module in self._stats or any(s.module == site.module for s in missing):
                continue
            if candidates is None:  # read the store's headers once, and only when something is looked up
                candidates, refused = self.store.scan() if self.store is not None else ([], [])
            stored = self._lookup(site, candidates) if self.store is not None else None
            if stored is not None:
                self._stats[site.module] = stored
                self._reused.add(site.module)
                reused.append(site)
            else:
                missing.append(site)
        if reused:
            self._say_reused(sorted(reused, key=lambda s: s.layer))
        if missing:
            missing.sort(key=lambda s: s.layer)
            self._say_collecting(missing, candidates or [])
            self._say_refused(refused)
            self._collect(missing)

    def _lookup(self, site: Site, candidates: list[Candidate]) -> StoredStatistics | None:
        """The reusable stored statistics (:func:`~editkit.keystats.reuse.choose`), else None."""
        assert self.store is not None
        wanted = self.identity(site)
        best = choose(candidates, wanted)
        if best is not None:
            return self.store.read(best.path)
        try:
            return self.store.load(wanted)  # None, or CorruptStatisticsError for a damaged file of exactly this key
        except OlderStatisticsError:  # not tampered with, only unverifiable: computed again, overwritten
            path = self.store.stats_path(wanted)
            self._say(f"key statistics: {path} was written by an older editkit (no checksum covers its token count "
                      "or identity); computing them again, and the new file replaces it (`editkit stats adopt` "
                      "keeps such files instead, when you know where they came from)")
            return None

    def _say(self, line: str) -> None:
        if self._report is not None and self.dist.is_main:
            self._report(line)

    def _say_reused(self, sites: Sequence[Site]) -> None:
        stats = [self._stats[s.module] for s in sites]
        counts = sorted({s.count for s in stats})
        folders = sorted({str(s.path.parent) for s in stats if s.path is not None})
        if all(s.identity.get("max_tokens") is None or s.count < s.identity["max_tokens"] for s in stats):
            size = "the whole corpus selection"
        elif self.max_tokens is not None and counts[0] > self.max_tokens:
            size = f"more than the {self.max_tokens:,} asked for"
        else:
            size = "as asked for"
        imported = sorted({str(s.info["imported_from"].get("file")) for s in stats
                           if isinstance(s.info.get("imported_from"), dict)})
        origin = f" (imported with `editkit stats import` from {', '.join(imported)})" if imported else ""
        self._say(f"key statistics: {_layers(sites)} reused from {', '.join(folders)}{origin} "
                  f"({' / '.join(f'{c:,}' for c in counts)} tokens, {size}); nothing recomputed")

    def _say_collecting(self, sites: Sequence[Site], candidates: list[Candidate]) -> None:
        head = (f"key statistics: computing C0 of {_layers(sites)} over {self.corpus.describe()} "
                f"({describe_budget(self.max_tokens, up_to=True)}, documents truncated to {self.max_length} tokens)")
        if self.store is None:
            self._say(f"{head} in memory (no statistics store)")
            return
        where = f"{head}, to store in {self.store.root}"
        if not candidates:
            self._say(f"{where}; no statistics stored there yet")
            return
        reasons: dict[str, list[Site]] = {}
        folders: dict[str, set[str]] = {}
        for site in sites:
            verdict = closest(candidates, self.identity(site))
            assert verdict is not None
            why = ", ".join(verdict.differences)
            reasons.setdefault(why, []).append(site)
            folder = verdict.candidate.path.parent
            folders.setdefault(why, set()).add(str(folder.relative_to(self.store.root))
                                               if folder.is_relative_to(self.store.root) else str(folder))
        told = "; ".join((why if len(reasons) == 1 else f"{_layers(group)}: {why}")
                         + f" [in {', '.join(sorted(folders[why]))}]" for why, group in reasons.items())
        self._say(f"{where}; the closest stored statistics differ in {told}")

    def _say_refused(self, refused: Sequence[tuple[Path, str]]) -> None:
        """Name the stored files that were not considered for reuse because their header does not verify."""
        older = [path for path, why in refused if why == OLDER_FORMAT]
        tampered = [(path, why) for path, why in refused if why != OLDER_FORMAT]
        if older:
            self._say(f"key statistics: {len(older)} stored file(s) from an older editkit are not reused (no checksum "
                      f"covers their token count), e.g. {older[0]}; those this run needs are computed again "
                      "(`editkit stats adopt` keeps them instead, when you know where they came from)")
        if not tampered:
            return
        shown = "; ".join(f"{path} {why}" for path, why in tampered[:3])
        more = f"; and {len(tampered) - 3} more" if len(tampered) > 3 else ""
        self._say(f"key statistics: {len(tampered)} stored file(s) left out, never reused: {shown}{more}; delete "
                  "them to recompute")

    def stored(self, site: Site) -> StoredStatistics:
        self.prepare([site])
        return self._stats[site.module]

    def second_moment(self, site: Site) -> torch.Tensor:
        """C0 = Σ k kᵀ / N, float64 on the CPU, [d_in, d_in]; the last site's is kept (one at a time)."""
        if self._moment is None or self._moment[0] != site.module:
            stats = self.stored(site)
            self._moment = None  # the previous site's goes before the next is made
            self._moment = (site.module, mean_moment(stats))
        return self._moment[1]

    def token_count(self, site: Site) -> int:
        return self.stored(site).count

    def eigendecomposition(self, site: Site) -> tuple[torch.Tensor, torch.Tensor]:
        """``eigh`` of C0 in float64: eigenvalues ascending [d_in], eigenvectors [d_in, d_in] (columns)."""
        if site.module not in self._eigh:
            stats = self.stored(site)
            device = self._device() if self._device().type == "cuda" else "cpu"
            for module in [m for m in self._eigh if m in self._eigh_stored]:
                del self._eigh[module]  # read again from the store's cache if asked for again
            values, vectors, stored = _eigh_through_store(stats, self.store, write=self.dist.is_main, device=device)
            self._eigh[site.module] = (values, vectors)
            if stored:  # else (no store, or a rank that does not write it) kept: it would be computed again
                self._eigh_stored.add(site.module)
        return self._eigh[site.module]

    def summary(self, site: Site, threshold: float = DEFAULT_THRESHOLD) -> SpectrumSummary:
        eigenvalues, _ = self.eigendecomposition(site)
        return SpectrumSummary.from_eigenvalues(eigenvalues, tokens=self.token_count(site), threshold=threshold)

    def path(self, site: Site) -> Path | None:
        """Where the site's statistics are stored (None in memory-only mode)."""
        if site.module in self._stats and self._stats[site.module].path is not None:
            return self._stats[site.module].path
        return self.store.stats_path(self.identity(site)) if self.store is not None else None

    def provenance(self, site: Site) -> dict[str, Any]:
        """What the site's statistics are (their stored identity), their real token count, file and source."""
        stats = self.stored(site)
        return {"identity": stats.identity or self.identity(site), "tokens": stats.count,
                "path": str(stats.path) if stats.path is not None else None,
                "source": "store" if site.module in self._reused else "collected"}

    # ------------------------------------------------------------------ collection

    def _device(self) -> torch.device:
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def _collect(self, sites: Sequence[Site]) -> None:
        plan = CollectionPlan(
            modules=tuple(s.module for s in sites), d_in={s.module: s.d_in for s in sites},
            max_length=self.max_length, max_tokens=self.max_tokens, dtype=self.dtype,
            batch_tokens=self.batch_tokens, chunk_tokens=CHUNK_BATCHES * self.batch_tokens,
        )
        store = self.store
        identities = [self.identity(s) for s in sites] if store is not None else []
        resume = None
        if store is not None and self.dist.is_main:
            found = store.load_checkpoint(identities)
            if found is not None and found.layout == plan.layout():
                resume = ResumeState(totals=found.totals, position=found.position, tokens=found.tokens)
        checkpoint = None
        if store is not None:
            def checkpoint(totals: dict[str, torch.Tensor], position: int, tokens: int) -> None:
                store.save_checkpoint(identities, totals, position=position, tokens=tokens, layout=plan.layout())

        host = self.host if self.corpus.kind == "registered" else None
        shown = self.progress and self.dist.is_main
        with collection_progress(
            f"C0 {_layers(sites)}", enabled=shown, max_tokens=self.max_tokens,
            samples=self.corpus.size(host) if shown else None,  # the progress ends at the corpus's end, if sooner
            start_tokens=resume.tokens if resume else 0, start_documents=resume.position if resume else 0,
        ) as bar:
            started = time.perf_counter()
            result = collect(
                self.model, self.tokenizer, lambda start: self.corpus.documents(start=start, host=host), plan,
                dist=self.dist, resume=resume, checkpoint=checkpoint, checkpoint_seconds=self.checkpoint_seconds,
                progress=bar,
            )
        self.last_collection = result
        info = {"documents": result.documents, "ranks": self.dist.world_size, "resumed_from": result.resumed_from,
                "corpus": self.corpus.describe(),
                "seconds": round(time.perf_counter() - started, 3)}  # this process's share, when it resumed
        unknown: list[dict[str, Any] | None] = [None] * len(sites)
        for site, identity in zip(sites, identities or unknown):
            total = result.totals[site.module]
            if store is not None and identity is not None and self.dist.is_main:
                self._stats[site.module] = store.save(identity, total, result.tokens, info)
            else:
                self._stats[site.module] = StoredStatistics(
                    total=total, count=result.tokens, identity=identity or {}, info=info,
                    sha256=statistics_sha256(total), path=store.stats_path(identity) if store and identity else None,
                )
        if store is not None and self.dist.is_main:
            store.remove_checkpoint(identities)
        self.dist.barrier()


def _layers(sites: Sequence[Site]) -> str:
    return ("layer " if len(sites) == 1 else "layers ") + ", ".join(str(s.layer) for s in sites)
