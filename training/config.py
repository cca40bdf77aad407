"""Typed pipeline configuration: one TOML file per dataset plus type-checked `--set key=value` overrides.

Every stage takes its own section of `PipelineConfig`; nothing reads configuration from anywhere else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import UserError
from training.data.types import MIN_EVALUATED_INTERACTIONS


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used; the message names the file or key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ColumnMap(_Section):
    """Which column of the user's file holds each field (`--set data.columns.user=customer_id`)."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    weight: str | None = None  # optional event weight column
    event: str | None = None  # optional event type column (kept for weighting)


class ItemColumnMap(_Section):
    """Columns of the item metadata file. A column you name must exist; a default name the file
    lacks means the file has no such field (a catalogue without prices is fine)."""

    item: str = "item_id"
    category: str | None = "category"
    price: str | None = "price"
    # Multi-valued tags (brand, category path, labels), separated by `data.attribute_separator`.
    attributes: str | None = "attributes"
    # Columns passed through to answers (title, url, ...): published as the version's item_extra and
    # returned when a request asks for them (`fields`); never seen by the models.
    extra: list[str] = Field(default_factory=list)


class SyntheticConfig(_Section):
    """The built-in shop: Zipf-like popularity, users with tastes over categories and price levels."""

    n_users: int = Field(20_000, gt=0)
    n_items: int = Field(10_000, gt=0)
    n_interactions: int = Field(400_000, gt=0)
    n_categories: int = Field(50, gt=0)
    zipf_exponent: float = Field(1.1, gt=0)
    session_length: float = Field(6.0, gt=0)  # mean items per session
    seed: int = 0


class DataConfig(_Section):
    source: Literal["synthetic", "ml-100k", "file"] = "synthetic"
    path: Path | None = None  # interactions CSV/Parquet when source = "file"
    items_path: Path | None = None  # optional item metadata CSV/Parquet
    columns: ColumnMap = Field(default_factory=ColumnMap)
    item_columns: ItemColumnMap = Field(default_factory=ItemColumnMap)
    attribute_separator: str = Field("|", min_length=1)  # between the tags of item_columns.attributes
    # Extra interaction logs appended to the source (e.g. the service's exported events, a retrain's).
    extra_paths: list[Path] = Field(default_factory=list)
    cache_dir: Path = Path("data/cache")
    # Users with fewer interactions stay in train only. At least 2: an evaluated user gives one
    # validation and one test interaction of their own (training.data.split.leave_last_out).
    min_interactions: int = 3
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    # Interaction files are read this many rows at a time (training/data/stream.py): memory stays ~20 bytes
    # per interaction plus one chunk, so a log larger than memory as text can still be trained on.
    chunk_rows: int = Field(250_000, gt=0)  # 10M-row logs: 250k read as fast as 1M with a lower peak
    # Event type -> weight multiplier, applied when columns.event is set ({"view": 1, "purchase": 5}).
    # Empty: weights come from the weight column or are 1.0. Non-empty: an unlisted event is an error.
    event_weights: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict)

    @field_validator("min_interactions")
    @classmethod
    def _two_rows_to_evaluate(cls, value: int) -> int:
        if value < MIN_EVALUATED_INTERACTIONS:
            raise ValueError(
                f"must be at least {MIN_EVALUATED_INTERACTIONS}, got {value}: an evaluated user needs "
                "a validation and a test interaction of their own"
            )
        return value

    @model_validator(mode="after")
    def _event_weights_need_an_event_column(self) -> DataConfig:
        if self.event_weights and not self.columns.event:
            raise ValueError(
                "data.event_weights is set but data.columns.event is not: which column holds the event?"
            )
        return self


TEACHER_SOURCES = ("train", "onnx:", "python:", "tables:")


class TeacherConfig(_Section):
    # Where the teacher comes from (training/teacher/imported.py): "train" = we train the two-tower below;
    # "onnx:<spec.toml|json|manifest.json>" = a query graph + item matrix + id maps (a version we
    # published imports as is); "python:package.module:factory" = a PyTorch module we export;
    # "tables:<spec>" = user vectors + item vectors (MF/ALS), the query a lookup by user id.
    # An imported teacher ignores every training setting below.
    source: str = "train"
    factory_args: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of a python: factory
    # Share of the interaction log whose user or item has no row in an imported teacher that is still
    # accepted (those items score 0, those users are unknown to a lookup teacher). 0: every id must map.
    max_unmapped_share: float = Field(0.0, ge=0, le=1)
    dim: int = Field(128, ge=8)
    history_len: int = Field(50, gt=0)
    # The history encoder: a causal transformer (SASRec-style), or causal pooling (recency-weighted
    # and mean pooling of the items so far, plus the last item, through an MLP) - the student's
    # architecture at teacher scale. On sparse shop logs the pooling encoder generalised better: the
    # transformer fits each user's few items and overfits within ~10 epochs.
    encoder: Literal["transformer", "pooling"] = "transformer"
    n_layers: int = Field(1, ge=0)
    n_heads: int = Field(4, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    # A user-id table beside the history. On dense logs (ml-100k: 106 interactions per user) it helps;
    # on shop logs with ~9 interactions per user each row is fitted on a handful of examples and only
    # overfits, and a history-only teacher also scores new users exactly as it scores known ones.
    use_user_id: bool = True
    # How the towers meet: "cosine" = unit vectors with the temperature folded into the user side;
    # "dot" = a plain inner product (SASRec's head), whose norms can carry popularity.
    score: Literal["cosine", "dot"] = "cosine"
    # One item-id table for the history (input) and the scored items (output), or two. Tied tables make
    # item-item scores nearly symmetric; shop logs are driven by "bought after" transitions, which are not.
    tie_item_embeddings: bool = True
    loss: Literal["auto", "full", "sampled"] = "auto"  # auto: full softmax when the catalog is small
    full_softmax_max_items: int = 20_000
    logq_correction: bool = True
    temperature: float = Field(0.05, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(256, gt=0)
    epochs: int = Field(30, gt=0)
    patience: int = Field(4, ge=1)
    max_train_seconds: float | None = None
    # Validate, and keep, the moving average of the weights with this half-life in epochs instead of
    # the raw weights (training/fit/averaging.py): on sparse logs validation NDCG@10 peaks for one sharp
    # epoch before the id tables memorise; the average sits in the flatter region around it. None = off.
    average_halflife_epochs: float | None = Field(None, gt=0)
    n_negatives: int = Field(2048, gt=0)  # sampled softmax: negatives per batch (popularity + logQ)
    # Share of the negatives' proposal that is uniform over the catalogue (the rest follows popularity;
    # logQ corrects either way). 1.0 = uniform negatives: every tail item is pushed down as often as a
    # head item, which a sparse log's tail needs.
    negative_smoothing: float = Field(0.1, gt=0, le=1)
    # Batches of windows of similar length (training.fit.examples.length_bucketed_order), so padding is cut
    # off: on shop logs (median 3 pairs per window) an epoch costs a fraction; uniform batches otherwise.
    bucket_by_length: bool = False
    user_dropout: float = Field(0.1, ge=0, lt=1)  # share of examples trained with the OOV user row
    valid_max_users: int | None = Field(5000, gt=0)  # early stopping on a seeded sample of users
    # Sparse embedding gradients (lazy Adam on the id tables): a step touches only the rows in the
    # batch instead of the whole table. None = on with the sampled softmax in a single process (a
    # 1M x 128 table made each dense AdamW step move ~2 GB); DDP keeps dense gradients.
    sparse_embeddings: bool | None = None

    @model_validator(mode="after")
    def _known_source(self) -> TeacherConfig:
        if self.source != "train" and not self.source.startswith(TEACHER_SOURCES[1:]):
            raise ValueError(
                f"teacher.source {self.source!r}: expected 'train', 'onnx:<spec>', "
                "'python:package.module:factory' or 'tables:<spec>'"
            )
        return self


class StudentConfig(_Section):
    dim: int = Field(16, ge=4, le=32)  # 16 keeps the student >= 10x smaller than the teacher on ml-100k
    history_len: int = Field(50, gt=0)
    hidden: list[int] = Field(default_factory=lambda: [64])
    dropout: float = Field(0.1, ge=0, lt=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(256, gt=0)
    epochs: int = Field(30, gt=0)
    patience: int = Field(4, ge=1)
    max_train_seconds: float | None = None
    average_halflife_epochs: float | None = Field(None, gt=0)  # as TeacherConfig's
    valid_max_users: int | None = Field(5000, gt=0)  # early stopping on a seeded sample of users
    # The hard-label loss: a full softmax over the catalog while it is cheap, else a sampled softmax
    # with logQ correction (as the teacher), and the soft-label losses score only the candidates.
    loss: Literal["auto", "full", "sampled"] = "auto"
    full_softmax_max_items: int = Field(100_000, gt=0)
    n_negatives: int = Field(2048, gt=0)
    sparse_embeddings: bool | None = None  # as TeacherConfig.sparse_embeddings
    # After training, each student's scores get - penalty * log(1 + train count), the penalty chosen from
    # these (and 0) by the one-standard-error rule on validation (student/calibrate.py); empty = off.
    popularity_penalties: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=list
    )


class DistillConfig(_Section):
    """Loss weights and soft-label settings; weight_kl = weight_rank = 0 gives the scratch baseline."""

    top_m: int = Field(100, ge=1)  # teacher's top-M items in each candidate set
    n_sampled: int = Field(100, ge=0)  # plus this many items sampled by popularity
    temperature: float = Field(2.0, gt=0)
    weight_hard: float = Field(1.0, ge=0)
    weight_kl: float = Field(1.0, ge=0)
    weight_rank: float = Field(0.5, ge=0)
    rank_top_k: int = Field(10, ge=1)
    rank_lambda: float = Field(5.0, gt=0)  # Tang & Wang's rank-decay hyper-parameter
    # Tang & Wang's pointwise (logistic) form, or listwise (softmax): on ml-100k the listwise form lifted
    # the distilled student from 0.089 to 0.104 test NDCG@10 (3 seeds); the logistic form lost to scratch.
    rank_loss: Literal["logistic", "softmax"] = "softmax"
    # Also distil on each user's whole train history (the input served at test time, which has no hard
    # label): this many copies per epoch, soft-label losses only. 0 = off.
    final_history_repeats: int = Field(0, ge=0)
    train_scratch: bool = True  # also train the scratch baseline for the report
    # Whose logits the soft labels carry: the teacher's, or the sum of the teacher's and the scratch
    # student's (training/teacher/ensemble.py; the scratch student is then trained first). The sum
    # helps where a small model from scratch ranks about as well as the teacher (sparse shop logs).
    soft_labels_from: Literal["teacher", "teacher+scratch"] = "teacher"
    sweep_temperatures: list[float] = Field(default_factory=list)  # optional sweep for the report
    # How the teacher's top-M candidates are found: "exact" scores every pair against the whole
    # catalog; "ivf" searches a faiss IVF index over the teacher's item vectors (its recall of the
    # exact top-M is measured and logged). auto = ivf from `shortlist_min_items` items on, when faiss
    # is installed: at 1M items exact scoring took ~90 s per 8,192 pairs on 2 cores.
    shortlist: Literal["auto", "exact", "ivf"] = "auto"
    shortlist_min_items: int = Field(200_000, gt=0)
    shortlist_nlist: int | None = Field(None, ge=1)  # None: ~4 sqrt(n_items)
    shortlist_nprobe: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _ensemble_needs_the_scratch_student(self) -> DistillConfig:
        if self.soft_labels_from == "teacher+scratch" and not self.train_scratch:
            raise ValueError(
                "distill.soft_labels_from = 'teacher+scratch' needs the scratch student: "
                "set distill.train_scratch = true"
            )
        return self


class ExportConfig(_Section):
    opset: int = Field(17, ge=13)
    parity_users: int = Field(1000, ge=1)
    parity_k: int = Field(10, ge=1)
    parity_atol: float = Field(1e-4, gt=0)
    # Retrieval at catalogue scale (training/export/ann.py): "exact" serves the ONNX TopK graph;
    # "hnsw"/"ivf" also build a faiss index over the student's item vectors, published with it.
    retrieval: Literal["exact", "hnsw", "ivf"] = "exact"
    hnsw_m: int = Field(32, ge=4, le=128)
    ef_construction: int = Field(200, ge=8)
    ef_search: int | None = Field(None, ge=1)  # None: the smallest breadth reaching min_recall (tuned)
    ivf_nlist: int | None = Field(None, ge=1)  # None: ~4 sqrt(n_items)
    recall_users: int = Field(1000, ge=100)  # users whose recall@10 vs exact is measured and published
    min_recall: float = Field(0.95, gt=0, le=1)  # below this the version is not published
    # The breadth is tuned to reach this on the tuning users (if the ladder allows; min_recall binds):
    # served requests differ from the tuning users, and recall tuned to exactly 0.95 served 0.93.
    ann_tune_recall: float = Field(0.98, gt=0, le=1)
    ann_threads: int = Field(1, ge=1)  # faiss OpenMP threads while building
    # Where the index searches: raw inner products, or L2 after the MIPS -> L2 reduction. auto = hnsw on
    # inner products (over the reduction it needed efSearch >= 1,024 on random and clustered 1M sets),
    # ivf over the reduction (fewer probes wherever both were measured); training/export/ann.py has the table.
    ann_space: Literal["auto", "inner_product", "mips_to_l2"] = "auto"
    # Precision of the item matrix inside the student's topk graph (training/export/item_precision.py):
    # float32 = the exact graph; int8 = ORT MatMulNBits, one scale per item (smaller file and RAM);
    # float16 = half the file only (onnxruntime's CPU session folds it back to float32 at load).
    # The teacher, the user graph and the item_vectors .npy stay float32.
    item_precision: Literal["float32", "float16", "int8"] = "float32"
    # A reduced graph whose top-k shares less than this with the float32 model's is not published.
    min_precision_overlap: float = Field(0.9, gt=0, le=1)


class ALSPeerConfig(_Section):
    """The implicit ALS peer's tuning grid: every point is fitted on train items and ranked on the
    validation item; the best is refitted on train + validation items for the standard test query.
    The Amazon Beauty / Sports optima were 128 factors, alpha 40, regularization 1 / 10."""

    factors: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [64, 128], min_length=1)
    regularization: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [0.1, 1.0, 10.0], min_length=1
    )
    alpha: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [10.0, 40.0], min_length=1)
    iterations: int = Field(15, gt=0)

    def grid(self) -> list[dict[str, Any]]:
        """Grid points in a fixed order (factors, then regularization, then alpha)."""
        return [
            {"factors": f, "regularization": r, "alpha": a, "iterations": self.iterations}
            for f in self.factors
            for r in self.regularization
            for a in self.alpha
        ]


class EvalConfig(_Section):
    # The test query: "train+valid" is the field's standard leave-one-out protocol (the user's train
    # items plus the validation item, what a live service sees); "train" is the older train-only query.
    test_history: Literal["train+valid", "train"] = "train+valid"
    # Train every model on the validation items too, except those of the users early stopping
    # reads (the largest stage `valid_max_users` sample; all users when it is unset or covers
    # everyone, which is the older behaviour). See training.data.split.with_validation_items for why.
    train_on_valid: bool = True
    k: int = Field(10, ge=1)
    recall_k: int = Field(50, ge=1)
    batch_size: int = Field(512, gt=0)
    scatter_users: int = Field(200, ge=1)
    # Test users ranked over the full catalog; None = all. A seeded sample keeps a 1M-item
    # evaluation (every user x every item, per model) within minutes.
    max_users: int | None = Field(None, gt=0)
    # Classic peers ranked beside the deep models, with the same test query and exclusions. "als"
    # needs the implicit package; without it the report says it was skipped and why.
    peers: list[Literal["popularity", "als"]] = Field(default_factory=lambda: ["popularity", "als"])
    als: ALSPeerConfig = Field(default_factory=ALSPeerConfig)


class PublishConfig(_Section):
    """Quality gates checked on the test metrics before anything is staged.

    student_vs_scratch: the distilled student's test NDCG@k must be at least
    `scratch NDCG@k * (1 - scratch_tolerance)`; the tolerance is relative (0.03 = the student may be
    up to 3% below the scratch student) and the edge passes. Measured seed-to-seed noise of the
    student-minus-scratch gap: ~1% relative on Amazon Beauty (configs/shop.toml, 2 seeds: 0.0402 vs
    0.0439, 0.0407 vs 0.0440), ~2% on ml-100k (student std 0.0015-0.002 at NDCG@10 ~0.10); 3% sits
    above both, so a refusal means the distillation hurt, not that the seed was unlucky.
    student_vs_popularity: the student must not be below the popularity peer (no tolerance).
    student_vs_served (a retrain): the new student's test NDCG@k must be at least the served
    version's student's on the same holdout, less `served_tolerance` (relative; items the served
    version does not know are its misses). 3%: the student's seed-to-seed standard deviation of test
    NDCG@10 is 1.8% on Beauty and 3.4% on Sports (bench/results/quality_amazon-*.md).
    A failed gate stops the publish (the CLI exits 3); `require_gates = false` publishes anyway and
    the manifest and report record the gate results as overridden.
    """

    require_gates: bool = True
    scratch_tolerance: float = Field(0.03, ge=0, lt=1)
    served_tolerance: float = Field(0.03, ge=0, lt=1)
    refit: bool = False  # fine-tune the published student on the whole log after evaluation (refit.py)
    refit_epochs: int = Field(1, gt=0)
    refit_lr_scale: float = Field(0.3, gt=0, le=1)  # x student.lr: the refit measured in docs/pipeline.md


class WarmConfig(_Section):
    """How a warm run trains (training/warm/): each model from the version's weights at `lr_scale` x its
    lr (the teacher `teacher_lr_scale` x that) for at most `epochs` epochs (students: `student_epochs`),
    stopping after `patience` without a better validation NDCG@k; `shrink` < 1 starts the students at
    shrink x theirs + (1 - shrink) x a fresh init; `replay` < 1 trains each student epoch on the pairs
    the version never saw and that share of the rest (training/warm/replay.py). The student is as good as
    its soft labels, hence a fast teacher and patient students: Beauty 98.7%, Sports 96.2% of cold."""

    lr_scale: float = Field(1.0, gt=0, le=1)
    teacher_lr_scale: float = Field(2.0, gt=0, le=4)
    epochs: int = Field(6, gt=0)
    patience: int = Field(4, ge=1)
    student_epochs: int | None = Field(12, gt=0)
    shrink: float = Field(1.0, gt=0, le=1)
    replay: float = Field(1.0, gt=0, le=1)


WARM_START_NONE, WARM_START_SERVED = "none", "served"
_VERSION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class PipelineConfig(_Section):
    name: str = "synthetic"
    seed: int = 0
    models_dir: Path = Path("models")
    work_dir: Path = Path(".recdistill/work")  # checkpoints and the soft-label cache
    threads: int | None = None  # torch intra-op threads; None: torch's default
    # A second process trains the scratch student and tunes the ALS peer beside the teacher when
    # the cores hold two of `threads` (CPU, one rank; training/schedule/side.py). Same models, less wall time.
    side_process: bool = True
    # Job budget in minutes: the teacher may use `teacher_budget_share`, the students share the rest less
    # `budget_reserve_share` (evaluation, export), each its cost-weighted part as it starts (distilled ~2x
    # scratch). Early stopping normally ends first; a stage's max_train_seconds still caps. None: no budget.
    budget_minutes: float | None = Field(None, gt=0)
    teacher_budget_share: float = Field(0.6, gt=0, le=1)
    budget_reserve_share: float = Field(0.1, ge=0, lt=1)
    # Where training runs (training/distributed.py): auto = the GPU when one is visible, else the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    # Where training starts (training/warm/): "none" = fresh weights; a version under models_dir =
    # its checkpoints, id maps merged by raw id (new items and users get new rows), trained as `warm`
    # says; "served" = the version the service serves (the pin, else LATEST), which the `recdistill`
    # command resolves where the service keeps its pin. `recdistill retrain` defaults to "served".
    warm_start: str = WARM_START_NONE
    warm: WarmConfig = Field(default_factory=WarmConfig)

    @field_validator("warm_start")
    @classmethod
    def _a_version_name(cls, value: str) -> str:
        if value not in (WARM_START_NONE, WARM_START_SERVED) and not _VERSION_NAME.fullmatch(value):
            raise ValueError(f"{value!r}: expected 'none', 'served' or a version folder name")
        return value
