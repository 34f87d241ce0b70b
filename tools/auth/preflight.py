"""The sign-in checks before the deploy (helm_deploy's preflight, `validate --online`).

Cognito: the pool and app client are read and each mismatch is a problem line. Google: the values
to register are printed once (nothing to read). Off AWS (Cognito on GKE or a local cluster) the
pool is read with whatever AWS identity boto3 finds; with none, the check is skipped in one line
(`make cloud-setup CLOUD=gcp` prints a read-only identity for it).
"""

from __future__ import annotations

from tools.auth import cognito, google
from tools.report import REPORTER
from tools.settings import Settings


def aws_identity_available() -> bool:
    import boto3

    return boto3.Session().get_credentials() is not None


def check(settings: Settings) -> list[str]:
    """One line per sign-in mismatch the providers show; notes and skips are printed, not returned."""
    providers = settings.auth_providers()
    problems: list[str] = []
    if "google" in providers:
        REPORTER.info(google.registration(settings))
    if "cognito" in providers:
        if settings.cloud != "aws" and not aws_identity_available():
            REPORTER.warning(
                f"Cognito user pool {settings['COGNITO_USER_POOL_ID']} not checked: no AWS credentials on this "
                f"{settings.cloud} deploy (`make cloud-setup CLOUD={settings.cloud}` prints a read-only AWS identity)",
                title="sign-in",
            )
        else:
            with REPORTER.action(f"Cognito user pool {settings['COGNITO_USER_POOL_ID']} and app client") as action:
                problems = cognito.check(settings)
                action.set("ok" if not problems else "warn", f"{len(problems)} mismatch(es)" if problems else "")
    return problems


def report_online(settings: Settings) -> list[str]:
    """`validate --online`: the same checks, each problem an error line; returns them."""
    problems = check(settings)
    for line in problems:
        REPORTER.error(line, title="sign-in")
    return problems
