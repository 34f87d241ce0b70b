"""One typed, frozen settings object, parsed once from the process environment and an env file.

Values come from the process environment first (how GitHub Actions passes variables and
secrets), then from the `--env-file` (python-dotenv). Every structural problem (unknown
cloud, a missing required value, a malformed one) is collected and raised together, each
naming its variable and the fix. Security rules on the values live in `tools.config_rules`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tools.errors import ToolError
from tools.platforms import DEFAULT_PLATFORMS, PLATFORMS_PATTERN, parse_platforms
from tools.report import REPORTER

CLOUDS = ("aws", "gcp", "local")
ENVIRONMENTS = ("production", "staging", "dev")
AUTH_PROVIDERS = ("auto", "google", "cognito")
JWT_ALGORITHMS = ("HS256", "HS384", "HS512")
IMAGES = ("backend", "frontend", "user-env")
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ToolError):
    """All problems found while reading the configuration, one line each."""

    def __init__(self, problems: list[str], exit_code: int = 1) -> None:
        self.problems = problems
        super().__init__("\n".join(problems), exit_code=exit_code)


@dataclass(frozen=True)
class Var:
    """One configuration variable: how to read it and where it is needed."""

    name: str
    help: str
    default: str | Callable[[dict[str, str]], str] | None = None
    clouds: tuple[str, ...] = CLOUDS  # where the variable means something
    required: bool = False  # required on the clouds above
    secret: bool = False
    kind: str = "str"  # str | bool | int | enum | email | url | path
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_help: str = ""
    maximum: int = 0  # int variables: the largest sane value (0: no bound)


VARS: tuple[Var, ...] = (
    # -- where -------------------------------------------------------------------------
    Var("CLOUD_PROVIDER", "aws, gcp or local (or give --cloud)", kind="enum", choices=CLOUDS),
    Var("ENVIRONMENT", "production, staging or dev", default="production", kind="enum", choices=ENVIRONMENTS),
    Var(
        "CLUSTER_NAME",
        "Kubernetes cluster name; names buckets and images",
        default="cmbcluster",
        pattern=r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$",
        pattern_help="2-40 lowercase letters, digits and hyphens, starting with a letter",
    ),
    Var("EKS_CLUSTER_NAME", "EKS cluster name (same as CLUSTER_NAME; either may be set)", clouds=("aws",)),
    Var(
        "NAMESPACE",
        "Kubernetes namespace of the release",
        default="cmbcluster",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        pattern_help="a DNS label (lowercase, digits, hyphens)",
    ),
    Var(
        "RELEASE_NAME",
        "Helm release name",
        default="cmbcluster",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$",
        pattern_help="lowercase letters, digits, hyphens, max 53",
    ),
    Var(
        "BASE_DOMAIN",
        "the frontend's host; the API is api.BASE_DOMAIN",
        required=True,
        pattern=r"^(?=.{4,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        pattern_help="a lowercase DNS name such as cmb.example.org, without https://",
    ),
    Var("API_URL", "public API URL", default=lambda v: f"https://api.{v.get('BASE_DOMAIN', '')}", kind="url"),
    Var(
        "FRONTEND_URL",
        "public frontend URL",
        default=lambda v: f"https://{v.get('BASE_DOMAIN', '')}",
        kind="url",
    ),
    Var(
        "LETSENCRYPT_EMAIL",
        "ACME account e-mail for cert-manager (required on gcp)",
        kind="email",
        clouds=("gcp", "local"),
    ),
    Var(
        "DNS_ZONE",
        "public DNS zone (its domain name) where the dns step points BASE_DOMAIN, api. and *. at the Ingress "
        "(Route53 hosted zone or Cloud DNS managed zone, found by this name); empty: DNS is left to you",
        clouds=("aws", "gcp"),
        pattern=r"^(?=.{2,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z]{2,63}$",
        pattern_help="the zone's domain name such as example.org, without a trailing dot",
    ),
    Var(
        "INGRESS_CLASS",
        "ingress class: nginx on gcp and local (aws always uses alb); gce is refused (a load balancer per Ingress)",
        default=lambda v: "nginx",
        clouds=("gcp", "local"),
        kind="enum",
        choices=("nginx", "gce"),
    ),
    # -- GCP -----------------------------------------------------------------------------
    Var(
        "PROJECT_ID",
        "GCP project id",
        clouds=("gcp",),
        required=True,
        pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
        pattern_help="6-30 lowercase letters, digits, hyphens",
    ),
    Var(
        "REGION",
        "GCP region, e.g. us-central1",
        clouds=("gcp",),
        required=True,
        pattern=r"^[a-z]+-[a-z]+[0-9]$",
        pattern_help="a GCP region such as us-central1",
    ),
    Var(
        "GKE_LOCATION",
        "GKE cluster location (region or zone); defaults to REGION",
        clouds=("gcp",),
        default=lambda v: v.get("REGION", ""),
        pattern=r"^[a-z]+-[a-z]+[0-9](-[a-z])?$",
        pattern_help="a GCP region or zone such as us-central1 or us-central1-a",
    ),
    Var(
        "GCP_SERVICE_ACCOUNT_EMAIL",
        "Google service account bound by Workload Identity to the backend",
        clouds=("gcp",),
        default=lambda v: f"{v.get('CLUSTER_NAME', '')}-sa@{v.get('PROJECT_ID', '')}.iam.gserviceaccount.com",
        kind="email",
    ),
    Var(
        "GCP_USER_SERVICE_ACCOUNT_EMAIL",
        "Google service account for user pods, never the backend's (default: CLUSTER_NAME-user@PROJECT_ID...)",
        clouds=("gcp",),
        default=lambda v: f"{v.get('CLUSTER_NAME', '')}-user@{v.get('PROJECT_ID', '')}.iam.gserviceaccount.com",
        kind="email",
    ),
    Var(
        "CERT_MANAGER_SERVICE_ACCOUNT_EMAIL",
        "Google service account of cert-manager (Workload Identity), which answers DNS-01 in DNS_ZONE",
        clouds=("gcp",),
        default=lambda v: f"cert-manager@{v.get('PROJECT_ID', '')}.iam.gserviceaccount.com",
        kind="email",
    ),
    Var(
        "ARTIFACT_REGISTRY_REPOSITORY",
        "Artifact Registry repository holding the images",
        clouds=("gcp",),
        default="cmbcluster",
        pattern=r"^[a-z][a-z0-9-]{0,62}$",
        pattern_help="lowercase letters, digits, hyphens",
    ),
    # -- AWS -----------------------------------------------------------------------------
    Var(
        "AWS_ACCOUNT_ID",
        "12-digit AWS account id",
        clouds=("aws",),
        required=True,
        pattern=r"^[0-9]{12}$",
        pattern_help="exactly 12 digits, e.g. 123456789012",
    ),
    Var(
        "AWS_REGION",
        "AWS region, e.g. us-east-1",
        clouds=("aws",),
        required=True,
        pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$",
        pattern_help="an AWS region such as us-east-1",
    ),
    Var(
        "AWS_IRSA_ROLE_ARN",
        "IAM role assumed by the backend through IRSA",
        clouds=("aws",),
        default=lambda v: f"arn:aws:iam::{v.get('AWS_ACCOUNT_ID', '')}:role/{v.get('CLUSTER_NAME', '')}-backend-irsa",
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$",
        pattern_help="an IAM role ARN such as arn:aws:iam::123456789012:role/NAME",
    ),
    Var(
        "AWS_USER_IRSA_ROLE_ARN",
        "IAM role for user pods through IRSA, never the backend's (default: role/CLUSTER_NAME-user-irsa)",
        clouds=("aws",),
        default=lambda v: f"arn:aws:iam::{v.get('AWS_ACCOUNT_ID', '')}:role/{v.get('CLUSTER_NAME', '')}-user-irsa",
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$",
        pattern_help="an IAM role ARN such as arn:aws:iam::123456789012:role/NAME",
    ),
    Var(
        "AWS_CERTIFICATE_ARN",
        "ACM certificate for the ALB (empty: the controller discovers it by host)",
        clouds=("aws",),
        pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$",
        pattern_help="an ACM certificate ARN",
    ),
    # -- local ---------------------------------------------------------------------------
    Var(
        "KUBE_CONTEXT",
        "kubeconfig context of the local cluster (default: current context)",
        clouds=("local",),
    ),
    # -- database ------------------------------------------------------------------------
    Var(
        "DATABASE_STORAGE_CLASS",
        "StorageClass of the database's ReadWriteOnce volume (default: the cluster's default; "
        "on EKS one of the EBS CSI driver, e.g. gp3)",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        pattern_help="a StorageClass name (lowercase letters, digits, '-' and '.')",
    ),
    Var(
        "DATABASE_SIZE",
        "size of the database's volume (default: 10Gi; 1Gi on local)",
        default=lambda v: "1Gi" if v.get("CLOUD_PROVIDER") == "local" else "10Gi",
        pattern=r"^[1-9][0-9]{0,4}(Mi|Gi|Ti)$",
        pattern_help="a size such as 10Gi (Mi, Gi or Ti)",
    ),
    Var(
        "LITESTREAM_IMAGE",
        "Litestream image that backs the database up to its bucket and restores it "
        "(a mirror in your registry, pinned with @sha256:..., is best)",
        default="docker.io/litestream/litestream:0.5.17",
        clouds=("aws", "gcp"),
        pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$",
        pattern_help="registry/repository:tag, registry/repository@sha256:<64 hex>, or both",
    ),
    # -- images --------------------------------------------------------------------------
    Var(
        "REGISTRY_URL",
        "image registry (default: ECR / Artifact Registry of the account; local: 127.0.0.1:5000)",
        default=lambda v: "127.0.0.1:5000" if v.get("CLOUD_PROVIDER") == "local" else "",
        pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$",
        pattern_help="host[:port][/path], no scheme",
    ),
    Var(
        "IMAGE_TAG",
        "release tag added to the content tags (e.g. v1.2.3)",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
        pattern_help="a Docker tag: letters, digits, _ . -",
    ),
    Var(
        "IMAGE_PLATFORMS",
        "the CPU platforms the images are built for, those of the cluster's nodes (e.g. linux/amd64,linux/arm64)",
        default=",".join(DEFAULT_PLATFORMS),
        pattern=PLATFORMS_PATTERN,
        pattern_help="comma-separated linux/<arch>[/<variant>], e.g. linux/amd64,linux/arm64",
    ),
    Var("BACKEND_CONTEXT", "build context of the backend image", default="../cmbcluster/backend", kind="path"),
    Var("BACKEND_DOCKERFILE", "Dockerfile of the backend (default: CONTEXT/Dockerfile)", kind="path"),
    Var(
        "FRONTEND_CONTEXT",
        "build context of the frontend image",
        default="../cmbcluster/nextjs-frontend",
        kind="path",
    ),
    Var("FRONTEND_DOCKERFILE", "Dockerfile of the frontend (default: CONTEXT/Dockerfile)", kind="path"),
    Var(
        "USER_ENV_CONTEXT",
        "build context of the user environment image",
        default="../cmbcluster/user-environment",
        kind="path",
    ),
    Var("USER_ENV_DOCKERFILE", "Dockerfile of the user environment (default: CONTEXT/Dockerfile)", kind="path"),
    # -- auth ----------------------------------------------------------------------------
    Var("AUTH_PROVIDER", "auto, google or cognito", default="auto", kind="enum", choices=AUTH_PROVIDERS),
    Var(
        "GOOGLE_CLIENT_ID",
        "Google OAuth client id",
        pattern=r"^[0-9A-Za-z-]+\.apps\.googleusercontent\.com$",
        pattern_help="NNN-xxx.apps.googleusercontent.com",
    ),
    Var("GOOGLE_CLIENT_SECRET", "Google OAuth client secret", secret=True),
    Var(
        "COGNITO_USER_POOL_ID",
        "Cognito user pool id",
        pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]_[0-9A-Za-z]+$",
        pattern_help="REGION_ID such as us-east-1_AbCdEf123",
    ),
    Var(
        "COGNITO_CLIENT_ID",
        "Cognito app client id",
        pattern=r"^[0-9a-z]{20,128}$",
        pattern_help="the app client id (lowercase letters and digits)",
    ),
    Var("COGNITO_CLIENT_SECRET", "Cognito app client secret", secret=True),
    Var("COGNITO_ISSUER", "https://cognito-idp.REGION.amazonaws.com/POOL_ID", kind="url"),
    # -- application secrets (generated once by make_secrets when unset) -------------------
    Var("SECRET_KEY", "backend signing key, at least 32 random characters", secret=True),
    Var("NEXTAUTH_SECRET", "NextAuth session secret, at least 32 random characters", secret=True),
    Var("FILE_ENCRYPTION_KEY", "Fernet key for users' files; NEVER change it once data exists", secret=True),
    # -- security switches and limits --------------------------------------------------
    Var("DEV_MODE", "true only for development", default="false", kind="bool"),
    Var("DEBUG", "true only for development", default="false", kind="bool"),
    Var("TLS_ENABLED", "must be true", default="true", kind="bool"),
    Var("RATE_LIMIT_ENABLED", "API rate limiting", default="true", kind="bool"),
    Var("ENABLE_SECURITY_HEADERS", "security headers on responses", default="true", kind="bool"),
    Var("CSP_ENABLED", "Content-Security-Policy header", default="true", kind="bool"),
    Var("JWT_ALGORITHM", "HS256, HS384 or HS512", default="HS256", kind="enum", choices=JWT_ALGORITHMS),
    Var("TOKEN_EXPIRE_HOURS", "session token lifetime in hours", default="8", kind="int", maximum=720),
    Var(
        "MAX_INACTIVE_HOURS", "hours before an idle user environment is stopped", default="4", kind="int", maximum=8760
    ),
    Var("MAX_USER_PODS", "most user environments at once", default="50", kind="int", maximum=10000),
)
VARS_BY_NAME = {v.name: v for v in VARS}
SECRET_VARS = tuple(v.name for v in VARS if v.secret)
RENAMED = {"DOMAIN": "BASE_DOMAIN", "PROJECT": "PROJECT_ID", "GCP_PROJECT_ID": "PROJECT_ID"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_URL = re.compile(r"^(https?)://([a-z0-9.-]+)(:[0-9]{1,5})?(/\S*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Everything the steps need, typed. `values` keeps every variable as its final string."""

    cloud: str
    values: Mapping[str, str] = field(repr=False)
    env_file: str | None = None

    def __getitem__(self, name: str) -> str:
        return self.values.get(name, "")

    def flag(self, name: str) -> bool:
        return self.values.get(name) == "true"

    def number(self, name: str) -> int:
        return int(self.values[name])

    @property
    def environment(self) -> str:
        return self["ENVIRONMENT"]

    @property
    def cluster_name(self) -> str:
        return self["CLUSTER_NAME"]

    @property
    def namespace(self) -> str:
        return self["NAMESPACE"]

    @property
    def release(self) -> str:
        return self["RELEASE_NAME"]

    @property
    def secrets(self) -> dict[str, str]:
        """The secret values that are set (unset ones are generated later by make_secrets)."""
        return {name: self.values[name] for name in SECRET_VARS if self.values.get(name)}

    def auth_providers(self) -> tuple[str, ...]:
        """The providers the frontend offers: what AUTH_PROVIDER asks for, or under auto every complete one."""
        choice = self["AUTH_PROVIDER"]
        if choice != "auto":
            return (choice,)
        return tuple(p for p in ("google", "cognito") if not self.missing_auth(p))

    def missing_auth(self, provider: str) -> list[str]:
        return [name for name in AUTH_SETTINGS[provider] if not self.values.get(name)]

    def dockerfile(self, image: str) -> str:
        key = image.upper().replace("-", "_")
        return self[f"{key}_DOCKERFILE"] or str(Path(self[f"{key}_CONTEXT"]) / "Dockerfile")

    def context(self, image: str) -> str:
        return self[f"{image.upper().replace('-', '_')}_CONTEXT"]

    @property
    def platforms(self) -> tuple[str, ...]:
        """IMAGE_PLATFORMS as a tuple, in the order given (build_push, plan)."""
        return parse_platforms(self["IMAGE_PLATFORMS"] or "")


AUTH_SETTINGS = {
    "google": ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"),
    "cognito": ("COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID", "COGNITO_CLIENT_SECRET", "COGNITO_ISSUER"),
}


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a dotenv file with python-dotenv; a line it cannot parse is an error, not a silent skip."""
    from dotenv.parser import parse_stream

    p = Path(path)
    if p.is_symlink() and not p.exists():
        try:
            p.resolve(strict=True)
        except RuntimeError:
            raise ConfigError([f"env file {p} is a symlink loop: point it at a real file"], 2) from None
        except OSError:
            raise ConfigError([f"env file {p} is a link to {os.readlink(p)}, which does not exist"], 2) from None
    if not p.exists():
        raise ConfigError([f"env file {p} does not exist: copy env/<cloud>.env.example to it and fill it in"], 2)
    if p.is_dir():
        raise ConfigError([f"env file {p} is a directory: give the path of a file"], 2)
    try:
        text = p.read_text(encoding="utf-8")
    except PermissionError:
        raise ConfigError([f"env file {p} is not readable: fix its permissions (chmod 600 {p})"], 2) from None
    except UnicodeDecodeError:
        raise ConfigError([f"env file {p} is not UTF-8 text: save it as UTF-8"], 2) from None
    bindings = list(parse_stream(io.StringIO(text)))
    bad = [b.original.line for b in bindings if b.error]
    if bad:
        raise ConfigError([f"{p}:{n}: not a KEY=VALUE line: fix or comment it out with #" for n in bad], 2)
    # A line without '=' is often a long value wrapped onto a line of its own: never echo it, it
    # may be (part of) a secret.
    bare = [b.original.line for b in bindings if b.key and b.value is None]
    if bare:
        raise ConfigError(
            [
                f"{p}:{n}: a line with no '=' (a value wrapped onto its own line?): write KEY=VALUE on one line"
                for n in bare
            ],
            2,
        )
    first_line: dict[str, int] = {}
    for binding in bindings:
        if not binding.key:
            continue
        if binding.key in first_line:
            from tools.report import REPORTER

            REPORTER.warning(
                f"{p}: {binding.key} is set twice (lines {first_line[binding.key]} and {binding.original.line}): "
                "the last one wins; delete the other",
                title="env file",
            )
        first_line[binding.key] = binding.original.line
    # python-dotenv's bindings without interpolation are exactly dotenv_values(interpolate=False): the last wins
    return {b.key: b.value for b in bindings if b.key and b.value is not None}


def load_settings(
    cloud: str | None = None,
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge process environment over the env file, fill defaults, check every variable."""
    environ = os.environ if environ is None else environ
    from_file = read_env_file(env_file) if env_file else {}
    raw: dict[str, str] = {}
    for name in VARS_BY_NAME.keys() | from_file.keys():
        value = environ.get(name) or from_file.get(name)
        if value is not None and value.strip() != "":
            raw[name] = value if name in SECRET_VARS else value.strip()
    # Secrets are registered before anything can be printed, so no line can carry one.
    REPORTER.register_secrets(raw.get(n) for n in SECRET_VARS)
    problems: list[str] = []
    cloud = _resolve_cloud(cloud, raw, problems)
    if cloud is None:
        raise ConfigError(problems, 2)
    raw["CLOUD_PROVIDER"] = cloud
    _check_renamed(from_file, environ, problems)
    _resolve_cluster_name(cloud, raw, problems)
    values = dict(raw)
    for var in VARS:  # defaults in table order: later defaults may use earlier values
        if var.name not in values and var.default is not None and cloud in var.clouds:
            default = var.default(values) if callable(var.default) else var.default
            if default:
                values[var.name] = default
    for var in VARS:  # defaults are built from checked values: only what the user gave is checked
        _check_var(var, cloud, values, problems, given=var.name in raw)
    if problems:
        raise ConfigError(problems)
    return Settings(cloud=cloud, values=values, env_file=str(env_file) if env_file else None)


def _resolve_cloud(flag: str | None, raw: dict[str, str], problems: list[str]) -> str | None:
    from_config = raw.get("CLOUD_PROVIDER")
    for source, value in (("--cloud", flag), ("CLOUD_PROVIDER", from_config)):
        if value is not None and value not in CLOUDS:
            problems.append(f"{source}: unknown cloud {value!r}: use one of {', '.join(CLOUDS)}")
            return None
    if flag and from_config and flag != from_config:
        problems.append(
            f"CLOUD_PROVIDER: the env file says {from_config!r} but --cloud says {flag!r}: "
            "use the env file made for that cloud, or fix CLOUD_PROVIDER"
        )
        return None
    if not (flag or from_config):
        problems.append("CLOUD_PROVIDER: no cloud given: pass --cloud aws|gcp|local or set CLOUD_PROVIDER")
        return None
    return flag or from_config


def _resolve_cluster_name(cloud: str, raw: dict[str, str], problems: list[str]) -> None:
    eks, name = raw.get("EKS_CLUSTER_NAME"), raw.get("CLUSTER_NAME")
    if cloud == "aws" and eks and name and eks != name:
        problems.append(
            f"EKS_CLUSTER_NAME: {eks!r} conflicts with CLUSTER_NAME {name!r}: set only one, or make them equal"
        )
    if cloud == "aws" and eks and not name:
        raw["CLUSTER_NAME"] = eks


def _check_renamed(from_file: Mapping[str, str], environ: Mapping[str, str], problems: list[str]) -> None:
    for old, new in RENAMED.items():
        if old in from_file and new not in from_file and not environ.get(new):
            problems.append(f"{old}: this toolkit reads {new}: rename {old} to {new}")


def _check_var(var: Var, cloud: str, values: dict[str, str], problems: list[str], given: bool) -> None:
    value = values.get(var.name)
    if cloud not in var.clouds:
        if value:
            values.pop(var.name)  # another cloud's setting: ignored, as in the seed's tables
        return
    if value is None:
        if var.required:
            problems.append(f"{var.name}: required for {cloud} but not set: set {var.name} ({var.help})")
        return
    error = _check_value(var, value) if given else None
    if error:
        problems.append(f"{var.name}: {error}")
    elif var.kind == "bool":
        values[var.name] = value.lower()


def _check_value(var: Var, value: str) -> str | None:
    if var.kind == "enum" and value not in var.choices:
        return f"{shown_value(value)} is not allowed: use one of {', '.join(var.choices)}"
    if var.kind == "bool" and value.lower() not in ("true", "false"):
        return f"{shown_value(value)} is not a boolean: use true or false"
    if var.kind == "int":
        # ASCII digits only: str.isdigit() also accepts superscripts like "²", which int() refuses
        if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) < 1:
            return f"{shown_value(value)} is not a positive whole number: use e.g. {var.default}"
        if var.maximum and int(value) > var.maximum:
            return f"{value} is more than {var.maximum}, the largest sane value: use e.g. {var.default}"
    if var.kind == "email" and not _EMAIL.match(value):
        return f"{shown_value(value)} is not an e-mail address: use name@example.org"
    if var.kind == "url" and not _URL.match(value):
        return f"{shown_value(value)} is not a URL: use https://host/path"
    if var.pattern and not re.match(var.pattern, value):
        shown = "(value hidden)" if var.secret else shown_value(value)
        return f"{shown} is malformed: use {var.pattern_help}"
    return None


def shown_value(value: str, limit: int = 60) -> str:
    """A value as an error message quotes it: repr, cut to `limit` characters with its length said."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def example_secret_values() -> set[str]:
    """The secrets' values in the example files (the rules refuse a secret copied from them). Only their lines are
    parsed: every changing step runs the rules, and parsing every example file whole cost each step ~15 ms."""
    from dotenv.parser import parse_stream

    wanted = tuple(f"{name}=" for name in SECRET_VARS)
    found: set[str] = set()
    for cloud in CLOUDS:
        path = REPO_ROOT / "env" / f"{cloud}.env.example"
        if not path.exists():
            continue
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip().startswith(wanted)]
        found |= {b.value for b in parse_stream(io.StringIO("\n".join(lines))) if b.key in SECRET_VARS and b.value}
    return found


def replace(settings: Settings, **changes: str) -> Settings:
    """A copy with some values changed (e.g. generated secrets), still frozen."""
    return dataclasses.replace(settings, values={**settings.values, **changes})
