"""All settings in one place: defaults, then the data dir's config file, then the environment."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = Path("/var/lib/lxcloud")
DEFAULT_LISTEN = "127.0.0.1:8080"
# Unprivileged containers: container ids 0..65535 map to host ids from here.
IDMAP_BASE = 1_000_000
IDMAP_COUNT = 65536


def data_dir_from_env(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).resolve()
    return Path(os.environ.get("LXCLOUD_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


@dataclass
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    listen: str = DEFAULT_LISTEN
    database_url: str = ""
    region: str = "lxcloud-1"
    workers: int = 8                 # operations run concurrently
    default_network_cidr: str = ""   # chosen on first start when empty
    network_prefix: int = 20         # size of the chosen default network (/20: 4,093 addresses)
    max_instances_per_project: int = 1000
    max_addresses_per_project: int = 5     # public addresses a project may hold
    # the default pool made on first start: a loop-backed filesystem of this size in the data
    # dir (sparse: the host's disk is used as data is written), so that disk limits are
    # enforced; "0": a plain directory (no limits enforced)
    default_pool_size: str = "50GiB"
    metadata_port: int = 8775        # on each cloud's gateway; 169.254.169.254:80 is sent there
    reconcile_interval: float = 30.0
    events_kept: int = 100_000       # the newest events kept in the database
    metrics_interval: float = 10.0   # seconds between collection rounds (0: no sampler)
    metrics_disk_interval: float = 60.0   # disks are measured this often (a walk on some pools)
    idmap_base: int = IDMAP_BASE
    idmap_count: int = IDMAP_COUNT
    lxcfs_dir: Path = Path("/var/lib/lxcfs")
    extra: dict[str, object] = field(default_factory=dict)

    # --- derived paths and names; all unique per data dir so clouds never collide
    @property
    def cloud_id(self) -> str:
        return hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:8]

    @property
    def zones(self) -> list[str]:
        """Availability zones: the all-in-one cloud's one node is zone `<region>a`."""
        return [f"{self.region}a"]

    @property
    def lxcpath(self) -> Path:
        return self.data_dir / "containers"

    @property
    def templates_dir(self) -> Path:
        return self.data_dir / "templates"

    @property
    def pools_dir(self) -> Path:
        return self.data_dir / "pools"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def url_file(self) -> Path:
        return self.data_dir / "api.url"

    @property
    def ec2_token_secret_file(self) -> Path:
        """Signs EC2 NextToken values, so a listing resumes across a restart."""
        return self.data_dir / "ec2-token.secret"

    @property
    def bridge_name(self) -> str:
        return f"lxcbr{self.cloud_id}"   # 13 chars: within IFNAMSIZ

    @property
    def veth_prefix(self) -> str:
        """Host-side veths of this cloud's instances start with it (the port guard matches it)."""
        return f"lx{self.cloud_id[:4]}"

    @property
    def nft_table(self) -> str:
        return f"lxcloud_{self.cloud_id}"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'db.sqlite'}"

    @classmethod
    def load(cls, data_dir: str | Path | None = None, **overrides: object) -> Settings:
        """Defaults ← <data_dir>/config.json ← LXCLOUD_* environment ← explicit overrides."""
        dd = data_dir_from_env(data_dir)
        values: dict[str, object] = {}
        cfg = dd / "config.json"
        if cfg.exists():
            values.update(json.loads(cfg.read_text()))
        env_map = {"LXCLOUD_LISTEN": "listen", "LXCLOUD_DATABASE_URL": "database_url",
                   "LXCLOUD_REGION": "region", "LXCLOUD_WORKERS": "workers",
                   "LXCLOUD_NETWORK": "default_network_cidr"}
        for env, key in env_map.items():
            if os.environ.get(env):
                values[key] = os.environ[env]
        values.update({k: v for k, v in overrides.items() if v is not None})
        s = cls(data_dir=dd)
        for key, val in values.items():
            if key == "data_dir" or not hasattr(s, key):
                continue
            default = getattr(s, key)
            if isinstance(default, Path):
                val = Path(str(val))
            elif isinstance(default, bool):
                val = str(val).lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                val = int(str(val))
            elif isinstance(default, float):
                val = float(str(val))
            setattr(s, key, val)
        return s

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}
