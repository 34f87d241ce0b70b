"""The security rules a configuration must pass before anything is deployed.

Rules read the typed settings and return findings; they never see or print a secret value
beyond comparing it. `validate_secrets` prints them, `plan` summarises them, and every step
that changes something refuses to run while any finding is an error.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import Counter
from dataclasses import dataclass

from tools.cloud import check_bucket_name, cloud_for
from tools.settings import AUTH_SETTINGS, Settings, example_values

# Placeholders seen in the original scripts, docs and common templates.
KNOWN_PLACEHOLDERS = frozenset(
    {
        "dev-secret-key-change-in-production",
        "your-secret-key-here-replace-in-production",
        "change-me",
        "changeme",
        "change_me",
        "replace-me",
        "replaceme",
        "secret",
        "password",
        "your-secret-key",
        "your-client-secret",
        "your-google-client-secret",
        "your-cognito-client-secret",
        "xxx",
        "todo",
        "placeholder",
        "example",
    }
)
MIN_APP_SECRET = 32  # SECRET_KEY, NEXTAUTH_SECRET (CMBCLUSTER_FACTS: "shorter than 32 characters")
MIN_CLIENT_SECRET = 20  # provider-issued OAuth client secrets (Google's are 24 to 35)
MIN_ENTROPY_BITS_PER_CHAR = 3.0
MIN_DISTINCT_CHARS = 8
APP_SECRETS = ("SECRET_KEY", "NEXTAUTH_SECRET")
CLIENT_SECRETS = ("GOOGLE_CLIENT_SECRET", "COGNITO_CLIENT_SECRET")


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning | note
    variable: str
    message: str  # says what is wrong and how to fix it; never contains a secret value

    def __str__(self) -> str:
        return f"{self.variable}: {self.message}"


def check(settings: Settings) -> list[Finding]:
    """Every finding for these settings, errors first."""
    findings: list[Finding] = []
    examples = _example_secret_values()
    for name in APP_SECRETS:
        findings += _check_secret(settings, name, MIN_APP_SECRET, examples, generated=True)
    findings += _check_encryption_key(settings, examples)
    findings += _check_auth(settings, examples)
    findings += _check_switches(settings)
    findings += _check_urls(settings)
    findings += _check_tls_issuer(settings)
    findings += _check_bucket(settings)
    findings += _check_user_identity(settings)
    order = {"error": 0, "warning": 1, "note": 2}
    return sorted(findings, key=lambda f: order[f.level])


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def report(findings: list[Finding], verbose: bool = True, title: str = "validate_secrets") -> None:
    """One line per finding (errors and warnings also as annotations); notes only when verbose."""
    from tools.report import REPORTER

    for finding in findings:
        if finding.level == "error":
            REPORTER.error(str(finding), title=title)
        elif finding.level == "warning":
            REPORTER.warning(str(finding), title=title)
        elif verbose:
            REPORTER.info(str(finding))


def require_valid(settings: Settings, step: str) -> None:
    """Refuse (before any change) when the rules report errors: every step that changes something calls this."""
    from tools.errors import ToolError
    from tools.report import REPORTER

    example = example_file_problem(settings)
    if example:  # never deploy from the tracked example (it invites filling in a tracked file)
        raise ToolError(f"{example}; {step} does not run on an example file", 2)
    found = errors(check(settings))
    for finding in found:
        REPORTER.error(str(finding), title=step)
    if found:
        raise ToolError(
            f"{len(found)} configuration error(s): nothing was changed; fix them "
            f"(python -m tools.validate_secrets) and run {step} again"
        )


def example_file_problem(settings: Settings) -> str | None:
    """What to do when the settings come from a tracked `env/*.env.example` file, else None."""
    path = settings.env_file or ""
    if not path.endswith(".example"):
        return None
    own = path.removesuffix(".example")
    return f"{path} is the tracked example: cp {path} {own}, fill it in (it is git-ignored) and use that"


def chosen_providers_note(settings: Settings) -> str:
    providers = settings.auth_providers()
    label = " and ".join(providers) if providers else "none"
    return f"auth provider: {settings['AUTH_PROVIDER']} -> {label}"


# -- secrets -------------------------------------------------------------------------------
def weakness(value: str, min_length: int) -> str | None:
    """Why a secret value is weak, or None. Says nothing about the value itself."""
    lowered = value.strip().lower()
    if lowered in KNOWN_PLACEHOLDERS or lowered.startswith(("your-", "your_", "<", "replace", "change")):
        return "is a known placeholder"
    if len(value) < min_length:
        return f"is shorter than {min_length} characters"
    if len(set(value)) == 1:
        return "repeats a single character"
    if _repeats_pattern(value):
        return "repeats a short pattern"
    if len(set(value)) < MIN_DISTINCT_CHARS or _entropy(value) < MIN_ENTROPY_BITS_PER_CHAR:
        return "has too little entropy (too few distinct characters)"
    return None


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


def _repeats_pattern(value: str) -> bool:
    n = len(value)
    return any(n % k == 0 and value == value[:k] * (n // k) for k in range(1, n // 3 + 1))


def _example_secret_values() -> set[str]:
    from tools.settings import SECRET_VARS

    return {v for values in example_values().values() for k, v in values.items() if k in SECRET_VARS and v}


def _check_secret(
    settings: Settings, name: str, min_length: int, examples: set[str], generated: bool = False
) -> list[Finding]:
    value = settings.values.get(name)
    if not value:
        if generated:
            return [Finding("note", name, "not set: make_secrets generates it once and keeps it")]
        return []
    reason = weakness(value, min_length)
    if value in examples and reason != "is a known placeholder":
        reason = "is the value from an env/*.env.example file"
    if reason:
        if generated:
            fix = (
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'` "
                "or unset it to have make_secrets generate it"
            )
        else:
            fix = "use the client secret issued by the provider"
        return [Finding("error", name, f"{reason}: {fix}")]
    return []


def _check_encryption_key(settings: Settings, examples: set[str]) -> list[Finding]:
    name = "FILE_ENCRYPTION_KEY"
    value = settings.values.get(name)
    if not value:
        return [Finding("note", name, "not set: make_secrets generates it once and keeps it (never rotated)")]
    if value in examples or weakness(value, 0) == "is a known placeholder":
        return [Finding("error", name, "is a placeholder: unset it to have one generated, or set a Fernet key")]
    try:
        raw = base64.urlsafe_b64decode(value.encode())
        valid = len(raw) == 32 and len(value) == 44
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        return [
            Finding(
                "error",
                name,
                "is not a Fernet key (URL-safe base64 of 32 bytes, 44 characters): generate one with "
                "`python -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`",
            )
        ]
    return []


# -- auth ------------------------------------------------------------------------------------
def _check_auth(settings: Settings, examples: set[str]) -> list[Finding]:
    choice = settings["AUTH_PROVIDER"]
    findings: list[Finding] = []
    configured = settings.auth_providers()
    if choice == "auto":
        if not configured:
            for provider in AUTH_SETTINGS:
                missing = ", ".join(settings.missing_auth(provider))
                findings.append(
                    Finding("error", "AUTH_PROVIDER", f"auto found no complete provider: {provider} needs {missing}")
                )
        for provider in AUTH_SETTINGS:
            missing = settings.missing_auth(provider)
            partial = missing and len(missing) < len(AUTH_SETTINGS[provider])
            if configured and partial:
                findings.append(
                    Finding(
                        "warning",
                        "AUTH_PROVIDER",
                        f"{provider} is partly configured (missing {', '.join(missing)}) and is ignored: "
                        "complete or remove its settings",
                    )
                )
        if configured:
            findings.append(Finding("note", "AUTH_PROVIDER", f"auto chose {' and '.join(configured)}"))
    else:
        for name in settings.missing_auth(choice):
            findings.append(Finding("error", name, f"required for AUTH_PROVIDER={choice} but not set: set {name}"))
    for provider in configured:
        findings += _check_secret(settings, CLIENT_SECRETS[provider == "cognito"], MIN_CLIENT_SECRET, examples)
    if "cognito" in configured:
        findings += _check_cognito_issuer(settings)
    return findings


def _check_cognito_issuer(settings: Settings) -> list[Finding]:
    issuer, pool = settings["COGNITO_ISSUER"], settings["COGNITO_USER_POOL_ID"]
    region = pool.split("_", 1)[0]
    expected = f"https://cognito-idp.{region}.amazonaws.com/{pool}"
    if issuer.rstrip("/") != expected:
        return [Finding("error", "COGNITO_ISSUER", f"does not match COGNITO_USER_POOL_ID: use {expected}")]
    return []


# -- switches, URLs, TLS -----------------------------------------------------------------------
def _check_switches(settings: Settings) -> list[Finding]:
    findings = []
    production = settings.environment == "production"
    for name in ("DEV_MODE", "DEBUG"):
        if settings.flag(name):
            level = "error" if production else "warning"
            findings.append(Finding(level, name, f"is true in {settings.environment}: set {name}=false"))
    if not settings.flag("TLS_ENABLED"):
        level = "warning" if settings.environment == "dev" else "error"
        findings.append(Finding(level, "TLS_ENABLED", "must be true (the backend refuses to start without TLS)"))
    for name in ("RATE_LIMIT_ENABLED", "ENABLE_SECURITY_HEADERS", "CSP_ENABLED"):
        if not settings.flag(name):
            level = "error" if production else "warning"
            findings.append(Finding(level, name, f"is off in {settings.environment}: set {name}=true"))
    return findings


def _check_urls(settings: Settings) -> list[Finding]:
    findings = []
    for name in ("API_URL", "FRONTEND_URL", "COGNITO_ISSUER"):
        value = settings.values.get(name, "")
        if value.lower().startswith("http://"):
            findings.append(Finding("error", name, f"uses http://: use {'https://' + value[7:]}"))
    return findings


def _check_tls_issuer(settings: Settings) -> list[Finding]:
    if settings.cloud == "gcp" and not settings["LETSENCRYPT_EMAIL"]:
        return [Finding("error", "LETSENCRYPT_EMAIL", "required on gcp (cert-manager issues the certificate): set it")]
    return []


def _check_bucket(settings: Settings) -> list[Finding]:
    if settings.cloud == "local":
        return []
    problem = check_bucket_name(cloud_for(settings).database_bucket)
    names = "PROJECT_ID and CLUSTER_NAME" if settings.cloud == "gcp" else "CLUSTER_NAME"
    return [Finding("error", "CLUSTER_NAME", f"{problem}: shorten {names}")] if problem else []


# -- identities -------------------------------------------------------------------------------
USER_IDENTITY = {
    "aws": ("AWS_USER_IRSA_ROLE_ARN", "AWS_IRSA_ROLE_ARN"),
    "gcp": ("GCP_USER_SERVICE_ACCOUNT_EMAIL", "GCP_SERVICE_ACCOUNT_EMAIL"),
}


def _check_user_identity(settings: Settings) -> list[Finding]:
    """User pods run users' code: with the backend's identity they could read the database bucket
    and every user's bucket. Their own identity is required outside dev."""
    names = USER_IDENTITY.get(settings.cloud)
    if not names:
        return []
    user, backend = names
    level = "warning" if settings.environment == "dev" else "error"
    if not settings[user]:
        return [Finding(level, user, f"not set: give user pods an identity of their own (not {backend}'s)")]
    if settings[user] == settings[backend]:
        return [
            Finding(
                level,
                user,
                f"is the backend's identity ({backend}): user code could then read the database bucket and every "
                f"user's bucket; create a separate identity that reaches only the user buckets and set {user} to it",
            )
        ]
    return []
