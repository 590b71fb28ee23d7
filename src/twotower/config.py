"""Configuration in two layers (STYLE.md §2).

ML stages use plain dataclasses (`Config`), loaded as defaults -> YAML file -> environment
(`TWOTOWER__SECTION__KEY=value`) -> CLI overrides (`section.key=value`), then validated.
Service/database settings (`Settings`) use pydantic-settings: DATABASE_URL, TWOTOWER_HOME, auth.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from twotower.errors import InvalidInput

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "default.yaml"


@dataclass
class ArtifactsConfig:
    """Vocabulary limits (seed 003 §3.1 keys)."""

    max_tag_vocab: int = 512
    min_tag_freq: int = 3
    max_actress_vocab: int = 256
    min_actress_freq: int = 2
    max_history: int = 200  # liked videos fed to the history path of the user tower
    # The seed's optional item inputs (features_content.py): any of "genre", "maker", "text"
    # (TF-IDF of title + description). Off by default: bench/item_inputs.py measures each.
    item_inputs: list[str] = field(default_factory=list)
    max_genre_vocab: int = 64
    max_maker_vocab: int = 256
    min_maker_freq: int = 2
    max_text_vocab: int = 2000
    min_text_freq: int = 2


@dataclass
class ModelConfig:
    """Tower shapes. `kind` picks the family: `mlp` (seed 003 content towers) or
    `hybrid` (linear history path + item-ID table + content MLP, see docs/benchmarks.md)."""

    kind: str = "mlp"
    embedding_dim: int = 256
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256])
    dropout: list[float] = field(default_factory=lambda: [0.2, 0.1])
    normalize: bool = True
    use_content: bool = True
    # hybrid: false keeps the user tower linear in the like history (no MLP of the user features),
    # so the database can compute user vectors itself (recommend_videos, SQL-servable versions).
    user_content: bool = True
    init: str = "random"  # random | ease_svd | svd
    ease_lambda: float = 0.0  # 0 -> choose on validation
    # hybrid: how many item content MLPs are distilled (each from its own seed) and averaged for
    # videos with no decision yet; one alone swings with the seed (docs/benchmarks.md, section 2)
    content_ensemble: int = 1


@dataclass
class TrainingConfig:
    epochs: int = 25
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    gradient_clip_norm: float = 5.0
    early_stopping_patience: int = 5
    min_delta: float = 1e-4
    negative_sampling_ratio: int = 3
    sampler_mix: dict[str, float] = field(
        default_factory=lambda: {"random": 0.6, "hard": 0.3, "popular": 0.1}
    )
    loss: str = "bce"  # bce | margin | softmax
    margin: float = 0.5
    temperature: float = 0.1
    logq_correction: bool = True
    train_val_split: float = 0.1
    early_stopping_metric: str = "val_loss"  # val_loss | ndcg@10
    seed: int = 42
    use_rpc_features: bool = False
    distill_epochs: int = 30  # hybrid: content MLP -> ID vectors, for cold-start videos
    # torch / OpenMP / BLAS threads while training; 0 = the machine's physical cores. The same
    # seed gives the same model bit for bit only at the same thread count (sums are split
    # differently across threads), on the same machine and torch version.
    threads: int = 0


@dataclass
class EvaluationConfig:
    split: str = "temporal-user"
    test_fraction: float = 0.2
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])


@dataclass
class EmbeddingConfig:
    batch_size: int = 4096
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64
    ef_search: int = 40  # recall@10 >= 0.98 at 50k and 1M videos (docs/benchmarks.md)
    max_scan_tuples: int = 20000


@dataclass
class BatchConfig:
    batch_size: int = 500
    max_retries: int = 3
    backoff_seconds: float = 1.0
    log_retention_days: int = 7
    webhook_url: str = ""


@dataclass
class ServingConfig:
    models_refresh_seconds: float = 30.0  # new active versions and traffic shares
    popular_refresh_seconds: float = 60.0  # cold-start and fallback list
    ops_refresh_seconds: float = 30.0  # batch and staleness gauges for /metrics (read from SQL)
    reasons_refresh_seconds: float = 300.0  # video -> tags/performers index behind the reasons
    jwks_refresh_seconds: float = 300.0  # re-read TWOTOWER_JWKS_URL (signing keys rotate)
    request_timeout_seconds: float = 2.0  # a request's database budget: no 503 takes longer
    # The deck: a card served and not answered stays out of the user's decks this long (`db init`
    # copies it into twotower.settings for recommend_videos).
    impression_ttl_seconds: float = 86400.0
    # MMR diversity of a deck when neither the request nor the user's own setting names one: 0 is
    # the plain ranking, 1 the most varied (`db init` copies it into twotower.settings).
    diversity: float = 0.0
    # Share of a warm user's deck given to new videos (fewer than 20 answers), picked by Thompson
    # sampling (twotower.explore_pick), when the request names none (`db init` copies it too).
    # 0.2: bench/simulate.py's rule on 600 users (docs/benchmarks.md section 11).
    explore_share: float = 0.2
    # Demographic cold start: a segment (age_range/region) gets its own popular list once it had
    # this many decisions in the last 30 days of activity (`db init` copies it too).
    segment_min_decisions: int = 500
    # Nope-aware ranking: demote candidates close (cosine of item vectors) to the user's 20 most
    # recent nopes by this weight in the re-rank (twotower.mmr); 0 off (`db init` copies it too).
    nope_weight: float = 0.0
    # Impression discounting: a card served again after the TTL, still unanswered, has its
    # relevance multiplied by (1 - this) for each earlier serving (twotower.mmr); 0 off.
    impression_discount: float = 0.5
    # "Less of this" as a ranking signal: besides never showing a muted video again, demote
    # candidates close to the user's muted videos by this weight in the re-rank; 0 off.
    mute_weight: float = 0.5
    # Onboarding fades out as likes arrive: a user with picks and L likes gets ceil(limit * (1 -
    # L / this)) of the picks' videos dealt into the ranked deck (1: hand over at the first like)
    onboarding_fade_likes: int = 10


@dataclass
class DatabaseConfig:
    # auto: refuse a connection that does not keep session settings (a transaction-mode pooler,
    # or DATABASE_URL on port 6543, Supabase's transaction pooler); transaction: refuse at once;
    # session: a direct connection or a session-mode pooler, no check.
    pooler: str = "auto"


@dataclass
class SourceConfig:
    """Where the app's tables are and what their columns are called (DESIGN §2). twotower reads
    them through views it creates in its own schema (ids cast to text) and never alters them. A
    table the app does not have is `table: null`; a column it lacks is `null` (read as missing).
    Keys left out keep the seed's names."""

    schema: str = "public"
    profiles: dict = field(default_factory=lambda: {"table": "profiles"})
    videos: dict = field(default_factory=lambda: {"table": "videos"})
    video_tags: dict = field(default_factory=lambda: {"table": "video_tags"})
    video_performers: dict = field(default_factory=lambda: {"table": "video_performers"})
    decisions: dict = field(default_factory=lambda: {"table": "user_video_decisions"})


@dataclass
class Config:
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Stable hash: tells when a model was trained with other settings (gorse-style).
        Service settings do not change a model, so they are left out."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("serving", "source", "database")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = cls()
        _merge(cfg, data, "")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        t, m = self.training, self.model
        if t.loss not in ("bce", "margin", "softmax"):
            raise InvalidInput(f"training.loss must be bce, margin or softmax, not {t.loss!r}")
        if m.kind not in ("mlp", "hybrid"):
            raise InvalidInput(f"model.kind must be mlp or hybrid, not {m.kind!r}")
        if m.init not in ("random", "ease_svd", "svd"):
            raise InvalidInput(f"model.init must be random, ease_svd or svd, not {m.init!r}")
        bad = sorted(set(self.artifacts.item_inputs) - {"genre", "maker", "text"})
        if bad:
            raise InvalidInput(f"artifacts.item_inputs: unknown {bad}; use any of genre, maker, text")
        if abs(sum(t.sampler_mix.values()) - 1.0) > 1e-6:
            raise InvalidInput("training.sampler_mix shares must sum to 1")
        if not set(t.sampler_mix) <= {"random", "hard", "popular"}:
            raise InvalidInput("training.sampler_mix keys are random, hard, popular")
        if t.epochs < 0 or t.distill_epochs < 0:
            raise InvalidInput("training.epochs and training.distill_epochs must be >= 0")
        for name, v in (("training.batch_size", t.batch_size),
                        ("model.embedding_dim", m.embedding_dim),
                        ("model.content_ensemble", m.content_ensemble)):
            if v < 1:
                raise InvalidInput(f"{name} must be >= 1, got {v}")
        if self.database.pooler not in ("auto", "session", "transaction"):
            raise InvalidInput(f"database.pooler must be auto, session or transaction, not {self.database.pooler!r}")
        if not 0 < self.evaluation.test_fraction < 1:
            raise InvalidInput("evaluation.test_fraction must be between 0 and 1")
        for name, v in dataclasses.asdict(self.serving).items():
            if name in ("diversity", "explore_share", "nope_weight", "impression_discount", "mute_weight"):
                if not 0 <= v <= 1:
                    raise InvalidInput(f"serving.{name} must be between 0 and 1, got {v}")
            elif v <= 0:
                raise InvalidInput(f"serving.{name} must be > 0, got {v}")
        if self.serving.onboarding_fade_likes > 200:  # the deck counts the latest 200 likes
            raise InvalidInput(f"serving.onboarding_fade_likes must be <= 200, got {self.serving.onboarding_fade_likes}")


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Coerce a YAML/env/CLI value to the type of the default it replaces."""
    if isinstance(value, str) and not isinstance(current, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise InvalidInput(f"config {key}: cannot parse {value!r}") from e
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise InvalidInput(f"config {key}: expected true/false, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, int | float):
        return float(value)
    if isinstance(current, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(current, str | list | dict) and isinstance(value, type(current)):
        return value
    raise InvalidInput(f"config {key}: expected {type(current).__name__}, got {value!r}")


def _merge(obj: Any, data: dict[str, Any], prefix: str) -> None:
    if not isinstance(data, dict):
        raise InvalidInput(f"config {prefix or 'file'}: expected a mapping")
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise InvalidInput(f"unknown config key {full!r}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, full + ".")
        else:
            setattr(obj, key, _coerce(value, current, full))


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (`path`, else $TWOTOWER_CONFIG), then TWOTOWER__A__B env vars,
    then `a.b=value` overrides."""
    path = path or os.environ.get("TWOTOWER_CONFIG") or None
    data: dict[str, Any] = {}
    for p in [DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None, path]:
        if p is None:
            continue
        p = Path(p)
        if not p.exists():
            raise InvalidInput(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise InvalidInput(f"config file {p} is not valid YAML: {e}") from e
        _deep_update(data, loaded)
    for key, value in os.environ.items():
        if key.startswith("TWOTOWER__"):
            _set_path(data, key[len("TWOTOWER__"):].lower().replace("__", "."), value)
    for item in overrides or []:
        if "=" not in item:
            raise InvalidInput(f"override {item!r} must look like section.key=value")
        k, v = item.split("=", 1)
        _set_path(data, k.strip(), v)
    return Config.from_dict(data)


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


class Settings(BaseSettings):
    """Service and database settings, from the environment (and a .env file)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    twotower_home: Path = Field(default=Path(".twotower"), alias="TWOTOWER_HOME")
    pg_shared_buffers: str = Field(default="1GB", alias="TWOTOWER_PG_SHARED_BUFFERS")
    pg_maintenance_work_mem: str = Field(default="1GB", alias="TWOTOWER_PG_MAINTENANCE_WORK_MEM")
    pool_min: int = Field(default=2, alias="TWOTOWER_POOL_MIN")
    pool_max: int = Field(default=10, alias="TWOTOWER_POOL_MAX")
    auth_enabled: bool = Field(default=True, alias="TWOTOWER_AUTH_ENABLED")
    jwt_secret: str | None = Field(default=None, alias="TWOTOWER_JWT_SECRET")
    jwt_public_key: str | None = Field(default=None, alias="TWOTOWER_JWT_PUBLIC_KEY")
    # Supabase's user tokens: aud "authenticated", iss "https://<project>.supabase.co/auth/v1".
    jwt_audience: str = Field(default="authenticated", alias="TWOTOWER_JWT_AUDIENCE")  # "" = unchecked
    jwt_issuer: str | None = Field(default=None, alias="TWOTOWER_JWT_ISSUER")
    jwks_url: str | None = Field(default=None, alias="TWOTOWER_JWKS_URL")  # http(s) URL or a file
    service_key: str | None = Field(default=None, alias="TWOTOWER_SERVICE_KEY")
    ab_salt: str = Field(default="twotower-ab", alias="TWOTOWER_AB_SALT")
    # FastAPI's native OpenTelemetry hooks cost each request a provider lookup; the service has
    # its own Prometheus metrics, so they are on only when asked for.
    otel: bool = Field(default=False, alias="TWOTOWER_OTEL")

    @property
    def home(self) -> Path:
        return self.twotower_home.expanduser().resolve()

    def path(self, *parts: str) -> Path:
        p = self.home.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p
