"""MOSEI-shaped synthetic data: text / audio / vision sequences with a sentiment label.

Everything is a pure function of the options (same options, identical arrays, whatever the number
of threads); each split, and each part of a split, draws from its own seeded stream, so the
labels, lengths and per-sample signals do not change with the layout, the dimensions or
``audio_neg_inf``.

Sizes, shapes and labels follow data-formats.md §3:

* Splits: ``max(8, round(n * scale))`` samples for MOSEI's n = 16326 / 1871 / 4659.
* Labels: each split's 7-class mix is MOSEI's own (§3.1). A segment's sentiment is the mean of 3
  integer annotator ratings in [-3, 3]: its 7-class bin is drawn from the split's real
  frequencies, then 3 ratings are drawn uniformly among the 343 triples whose mean falls in that
  bin (bins: exactly 0; (0, 1], (1, 2], (2, 3]; mirrored for negatives). Labels therefore lie on
  the 1/3 grid, and values that few triples reach (such as +-3) are rare, as in the real data.
* Lengths: segment durations are lognormal, median 6.4 s, sigma 0.60; audio runs at 20 Hz and
  vision at 15 Hz, clipped to [1, audio_len] and [1, vision_len].
* Layouts: ``unaligned`` (MulT/MMSA unaligned): text (N, text_len, text_dim) fixed length; audio
  (N, audio_len, audio_dim) and vision (N, vision_len, vision_dim) right-padded with zeros, with
  int32 ``lengths``. ``aligned`` (MMSA aligned_50): every modality (N, text_len, D), no lengths.
  ``vector``: every modality (N, D), the time average of the unaligned sequences (drawn in
  closed form: per-step noise over L steps averages to noise / sqrt(L)).

How informative each modality is. The sentiment s of a segment is split into independent parts,
one per modality plus a remainder that no modality sees::

    g_m ~ N(0, share_m * V)  independently, m in (text, audio, vision, rest)
    f_m = g_m + share_m * (s - sum_k g_k)        so that f_text + f_audio + f_vision + f_rest = s

(the Gaussian bridge: given their sum s, the f_m are distributed as independent parts of
variance share_m * V would be; V is the variance of MOSEI's train label mix). Modality m's
features carry c_m = f_m / sqrt(share_m * V), unit variance, along a fixed random unit direction
u_m (seeded, one per modality), plus independent Gaussian noise of ``step_noise`` per element
per time step::

    x_m[i, t] = c_m[i] * u_m + step_noise * e[i, t],   e ~ N(0, I);  padded steps stay 0

So ``*_share`` is the share of the sentiment's variance a modality explains (its R^2 for a
linear probe on time-averaged features, up to the per-step noise); a modality with share 0 is
pure noise. The parts are complementary, so fusing modalities adds what each one explains; with
the same sentiment seen through independent Gaussian noise per modality instead, a linear probe
cannot reach data-formats.md's fused target of .82: text at .77 and audio/vision at .65 cap it
at about .79.

Optional ``-inf`` entries in audio mimic COVAREP: a share ``audio_neg_inf`` of the valid audio
entries is set to -inf (the store writer replaces them by 0, as MMSA does); the number set is
``SourceData.notes["audio_neg_inf"]``.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np

from mmlearn.data.source import SPLITS, SourceData, SplitArrays, option, register_source
from mmlearn.data.targets import SENTIMENT_TARGETS, sentiment_targets
from mmlearn.errors import ConfigError

MODALITIES = ("text", "audio", "vision")
LAYOUTS = ("unaligned", "aligned", "vector")
SPLIT_SIZES = {"train": 16326, "val": 1871, "test": 4659}  # MOSEI feature pickles (MMSA)
MIN_SPLIT = 8

# MOSEI's 7-class counts (-3 ... +3) per split, data-formats.md §3.1 (s3prl CMU_MOSEI_Labels.csv).
LABEL_COUNTS = {
    "train": (613, 1584, 2542, 3538, 5289, 2256, 505),
    "val": (47, 159, 300, 433, 631, 251, 50),
    "test": (156, 489, 705, 1025, 1512, 665, 110),
}
DURATION_MEDIAN_S = 6.4  # lognormal fit to MOSEI segment durations, data-formats.md §3.2
DURATION_SIGMA = 0.60
AUDIO_HZ = 20.0  # MulT's COVAREP frame rate
VISION_HZ = 15.0  # MulT's FACET frame rate
CHUNK_ELEMENTS = 1 << 22  # float32 elements per chunk (16 MiB): bounds temporaries per thread

# Stream ids: every (seed, split, stream[, chunk, kind]) key seeds its own generator.
_LABELS, _DURATIONS, _PARTS, _FEATURES = 0, 1, 2, 10
_DIRECTIONS = 99


def _rating_sums() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of all 3-rating triples in [-3, 3], grouped by 7-class bin.

    Returns:
        sums: (343,) int64 triple sums ordered by bin, bin -3 first.
        offsets: (7,) int64 start of each bin in ``sums``.
        counts: (7,) int64 triples per bin.
    """
    triples = np.array(list(itertools.product(range(-3, 4), repeat=3)))  # (343, 3)
    total = triples.sum(axis=1)  # (343,) = 3 * mean rating
    bins = np.sign(total) * ((np.abs(total) + 2) // 3)  # 0; (0,1] -> 1, (1,2] -> 2, (2,3] -> 3
    order = np.argsort(bins, kind="stable")
    counts = np.bincount(bins + 3, minlength=7).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return total[order].astype(np.int64), offsets, counts


_SUMS, _BIN_OFFSETS, _BIN_COUNTS = _rating_sums()


def _rng(*key: int) -> np.random.Generator:
    """The generator of one stream; SFC64 draws normals about twice as fast as PCG64."""
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(list(key))))


def _label_variance(counts: tuple[int, ...]) -> float:
    """Population variance of the mean rating under a 7-class mix (triples uniform in a bin)."""
    p = np.asarray(counts, dtype=np.float64) / sum(counts)
    mean = sq = 0.0
    for k in range(7):
        values = _SUMS[_BIN_OFFSETS[k] : _BIN_OFFSETS[k] + _BIN_COUNTS[k]] / 3.0
        mean += p[k] * values.mean()
        sq += p[k] * (values**2).mean()
    return sq - mean**2


SENTIMENT_VAR = _label_variance(LABEL_COUNTS["train"])  # V in the module docstring, about 1.24


@dataclass(frozen=True)
class SyntheticOptions:
    scale: float = option(
        0.02, "share of MOSEI's 16326/1871/4659 train/val/test segments (1 = full size)"
    )
    seed: int = option(0, "seed of everything drawn: labels, lengths, directions and noise")
    layout: str = option(
        "unaligned",
        "unaligned (audio/vision padded with lengths), aligned (all text_len steps) or vector",
    )
    text_dim: int = option(768, "text feature size (BERT)")
    audio_dim: int = option(74, "audio feature size (COVAREP)")
    vision_dim: int = option(35, "vision feature size (FACET 4.2)")
    text_len: int = option(50, "text steps; also every modality's steps when layout=aligned")
    audio_len: int = option(500, "padded audio steps (20 Hz frames) when layout=unaligned")
    vision_len: int = option(500, "padded vision steps (15 Hz frames) when layout=unaligned")
    # The shares reproduce data-formats.md §3.3's targets (text .77, audio .65, vision .65,
    # fused .82; majority baseline .629) for a linear probe: least squares with a bias on
    # train, predicting the sentiment of time-averaged (layout=vector) features, Acc-2 non-zero
    # (sign of the prediction) on test. Measured by simulation with 16-dim features and 200000
    # train / 200000 test segments, seeds 0-2: text .773, audio .651, vision .649, fused .833.
    # Fused lands a point above .82: it is the sum of the shares, not a free parameter.
    text_share: float = option(0.41, "share of the sentiment's variance the text carries")
    audio_share: float = option(0.09, "share of the sentiment's variance the audio carries")
    vision_share: float = option(0.09, "share of the sentiment's variance the vision carries")
    step_noise: float = option(1.0, "std of the Gaussian noise on every feature at every step")
    audio_neg_inf: float = option(0.0, "share of valid audio entries set to -inf, as in COVAREP")

    def __post_init__(self) -> None:
        kinds = {"str": str, "int": int | np.integer, "float": int | float | np.number}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, kinds[str(f.type)]):
                raise ConfigError(f"{f.name} must be of type {f.type}, but got {f.name}={value!r}.")
        if not 0 < self.scale <= 1:
            raise ConfigError(
                f"scale must be in (0, 1] (1 = MOSEI's full size), but got scale={self.scale}."
            )
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, but got seed={self.seed}.")
        if self.layout not in LAYOUTS:
            raise ConfigError(
                f"layout must be one of {', '.join(LAYOUTS)}, but got layout={self.layout!r}."
            )
        for name in ("text_dim", "audio_dim", "vision_dim", "text_len", "audio_len", "vision_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, but got {name}={getattr(self, name)}.")
        for name in ("text_share", "audio_share", "vision_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(
                    f"{name} must be in [0, 1], but got {name}={getattr(self, name)}."
                )
        total = self.text_share + self.audio_share + self.vision_share
        if total > 1 + 1e-9:
            raise ConfigError(
                "text_share + audio_share + vision_share must be <= 1, but got "
                f"{self.text_share} + {self.audio_share} + {self.vision_share} = {total:g}; "
                "lower one of them."
            )
        if not (self.step_noise >= 0 and math.isfinite(self.step_noise)):
            raise ConfigError(
                f"step_noise must be finite and >= 0, but got step_noise={self.step_noise}."
            )
        if not 0 <= self.audio_neg_inf < 1:
            raise ConfigError(
                f"audio_neg_inf must be in [0, 1), but got audio_neg_inf={self.audio_neg_inf}."
            )

    def dims(self) -> dict[str, int]:
        """Feature size per modality."""
        return {"text": self.text_dim, "audio": self.audio_dim, "vision": self.vision_dim}

    def shares(self) -> dict[str, float]:
        """Share of the sentiment's variance per modality."""
        return {"text": self.text_share, "audio": self.audio_share, "vision": self.vision_share}


def split_size(split: str, scale: float) -> int:
    """Samples in ``split`` at ``scale``: ``max(8, round(n * scale))``."""
    return max(MIN_SPLIT, int(round(SPLIT_SIZES[split] * scale)))


def draw_sentiment(rng: np.random.Generator, counts: tuple[int, ...], n: int) -> np.ndarray:
    """Mean of 3 integer ratings in [-3, 3] per segment, with the given 7-class mix.

    Args:
        rng: the generator to draw from.
        counts: (7,) class counts, -3 ... +3; bins are drawn with these frequencies.
        n: number of segments.

    Returns:
        (n,) float32 on the 1/3 grid.
    """
    p = np.asarray(counts, dtype=np.float64) / sum(counts)
    bins = rng.choice(7, size=n, p=p)  # (n,)
    pick = rng.integers(0, _BIN_COUNTS[bins])  # (n,) a triple, uniform within the bin
    return (_SUMS[_BIN_OFFSETS[bins] + pick] / 3.0).astype(np.float32)


def draw_lengths(rng: np.random.Generator, n: int, hz: float, max_len: int) -> np.ndarray:
    """(n,) int32 frames of lognormal segment durations at ``hz``, clipped to [1, max_len]."""
    seconds = DURATION_MEDIAN_S * np.exp(DURATION_SIGMA * rng.standard_normal(n))  # (n,)
    return np.clip(np.rint(seconds * hz), 1, max_len).astype(np.int32)


def modality_signals(
    rng: np.random.Generator, sentiment: np.ndarray, shares: dict[str, float]
) -> dict[str, np.ndarray]:
    """Each modality's unit-variance part of the sentiment (the module docstring's c_m).

    Args:
        rng: the generator to draw from.
        sentiment: (N,) labels.
        shares: modality -> share of the sentiment's variance; the rest is seen by none.

    Returns:
        modality -> (N,) float32; zeros for a share of 0.
    """
    share = np.array([*shares.values(), max(0.0, 1.0 - sum(shares.values()))])  # (M + 1,)
    g = rng.standard_normal((len(sentiment), len(share))) * np.sqrt(share * SENTIMENT_VAR)
    parts = g + np.outer(sentiment.astype(np.float64) - g.sum(axis=1), share)  # (N, M + 1)
    scale = np.sqrt(np.where(share > 0, share * SENTIMENT_VAR, 1.0))
    return {m: (parts[:, i] / scale[i]).astype(np.float32) for i, m in enumerate(shares)}


def direction(seed: int, modality: int, dim: int) -> np.ndarray:
    """(dim,) float32 fixed random unit vector of one modality."""
    u = _rng(seed, _DIRECTIONS, modality).standard_normal(dim)
    return (u / np.linalg.norm(u)).astype(np.float32)


def fill(
    out: np.ndarray,
    signal: np.ndarray,
    u: np.ndarray,
    noise: float | np.ndarray,
    key: tuple[int, ...],
    pool: Executor,
    lengths: np.ndarray | None = None,
    inf_share: float = 0.0,
) -> int:
    """Write ``signal[i] * u + noise[i] * e`` (e standard normal) into ``out``, chunk by chunk.

    Chunk c draws from its own stream ``key + (c, ...)``, so the result does not depend on how
    many threads run the chunks. Without ``lengths`` every step is filled in place; with
    ``lengths`` only the first ``lengths[i]`` steps of the zero ``out[i]`` are drawn and written,
    and the padding stays exactly zero.

    Args:
        out: (N, D) or (N, T, D) float32 C-contiguous; zeros when ``lengths`` is given.
        signal: (N,) float32 the scalar each sample carries.
        u: (D,) float32 the modality's direction.
        noise: std of the noise per element (and step): a float or (N,) per sample.
        key: seed-sequence entropy of this array's streams.
        pool: runs the chunks.
        lengths: (N,) valid steps in [1, T] of a padded (N, T, D) ``out``; None for no padding.
        inf_share: probability of each (valid) entry being set to -inf afterwards.

    Returns:
        The number of entries set to -inf.
    """
    n = len(out)
    sigma = np.broadcast_to(np.asarray(noise, dtype=np.float32), (n,))  # (N,)
    chunk = max(1, CHUNK_ELEMENTS // max(1, math.prod(out.shape[1:])))
    extra = (1,) * (out.ndim - 1)
    steps = np.arange(out.shape[1]) if lengths is not None else None

    def work(c: int) -> int:
        rng = _rng(*key, c, 0)  # kind 0: the noise, kind 1: the -inf entries
        part = slice(c * chunk, (c + 1) * chunk)
        if lengths is None:
            block = out[part]  # (B, [T,] D) view
            rng.standard_normal(dtype=np.float32, out=block)
            block *= sigma[part].reshape(-1, *extra)
            block += signal[part].reshape(-1, *extra) * u
        else:
            lens = lengths[part]  # (B,)
            block = rng.standard_normal((int(lens.sum()), out.shape[2]), dtype=np.float32)
            block *= np.repeat(sigma[part], lens)[:, None]  # (sum L, D): valid steps in order
            block += np.repeat(signal[part], lens)[:, None] * u
        n_inf = 0
        if inf_share > 0:
            hit = _rng(*key, c, 1).random(block.shape, dtype=np.float32) < inf_share
            block[hit] = -np.inf
            n_inf = int(hit.sum())
        if lengths is not None:
            out[part][steps < lens[:, None]] = block  # row-major order = sample, then step
        return n_inf

    return sum(pool.map(work, range(-(-n // chunk))))


def build_split(opts: SyntheticOptions, split: str, pool: Executor) -> tuple[SplitArrays, int]:
    """One split's arrays and the number of -inf entries set in its audio."""
    index = SPLITS.index(split)
    n = split_size(split, opts.scale)
    sentiment = draw_sentiment(_rng(opts.seed, index, _LABELS), LABEL_COUNTS[split], n)  # (N,)
    dur_rng = _rng(opts.seed, index, _DURATIONS)
    steps = {
        "text": np.full(n, opts.text_len, dtype=np.int32),
        "audio": draw_lengths(dur_rng, n, AUDIO_HZ, opts.audio_len),
        "vision": draw_lengths(dur_rng, n, VISION_HZ, opts.vision_len),
    }
    signals = modality_signals(_rng(opts.seed, index, _PARTS), sentiment, opts.shares())
    max_len = {"text": opts.text_len, "audio": opts.audio_len, "vision": opts.vision_len}
    features: dict[str, np.ndarray] = {}
    lengths: dict[str, np.ndarray] = {}
    n_inf = 0
    for i, (m, dim) in enumerate(opts.dims().items()):
        u = direction(opts.seed, i, dim)  # (D,)
        key = (opts.seed, index, _FEATURES + i)
        inf_share = opts.audio_neg_inf if m == "audio" else 0.0
        if opts.layout == "vector":  # the time average over the steps of the unaligned layout
            x = np.empty((n, dim), dtype=np.float32)  # (N, D)
            noise = opts.step_noise / np.sqrt(steps[m])  # (N,)
            n_inf += fill(x, signals[m], u, noise, key, pool, inf_share=inf_share)
        elif opts.layout == "aligned" or m == "text":
            x = np.empty((n, opts.text_len, dim), dtype=np.float32)  # (N, T, D)
            n_inf += fill(x, signals[m], u, opts.step_noise, key, pool, inf_share=inf_share)
        else:
            x = np.zeros((n, max_len[m], dim), dtype=np.float32)  # (N, T, D)
            n_inf += fill(
                x, signals[m], u, opts.step_noise, key, pool, steps[m], inf_share=inf_share
            )
            lengths[m] = steps[m]
        features[m] = x
    return SplitArrays(features, sentiment_targets(sentiment), lengths), n_inf


def _workers() -> int:
    """Threads for the noise: the usable cores, at most 8 (numpy draws without the GIL)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cores or 1))


@register_source(
    "synthetic",
    "MOSEI-shaped synthetic data (text/audio/vision, real label mix, text >> audio ~ vision)",
    SyntheticOptions,
    modalities=lambda opts: tuple(opts.dims()),
)
def build_synthetic(opts: SyntheticOptions) -> SourceData:
    """Generate the train, val and test splits described in the module docstring.

    Args:
        opts: sizes, layout, informativeness and seed; checked when constructed.

    Returns:
        The splits with modalities text, audio, vision; targets sentiment, sentiment3 and
        sentiment2 (default task sentiment3); ``notes["audio_neg_inf"]`` counts -inf entries.
    """
    splits, n_inf = {}, 0
    with ThreadPoolExecutor(_workers()) as pool:
        for split in SPLITS:
            splits[split], k = build_split(opts, split, pool)
            n_inf += k
    return SourceData(splits, SENTIMENT_TARGETS, "sentiment3", notes={"audio_neg_inf": n_inf})
