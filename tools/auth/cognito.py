"""Cognito before the deploy: the user pool and its app client, read from the provider, against the settings.

Each mismatch is one line naming the fix in the Cognito console (User pool -> App integration ->
App client -> Hosted UI): the things that otherwise surface only after a green deploy, as
`redirect_mismatch`, `invalid_client` or an issuer NextAuth refuses.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from tools.auth import wiring
from tools.cloud import Cloud
from tools.cloud.awscall import aws_call
from tools.cloud_permissions import need
from tools.errors import ToolError
from tools.settings import Settings

CONSOLE = "in the Cognito console (App client -> Hosted UI -> Edit)"


def pool_arn(settings: Settings) -> list[str]:
    """The user pool's ARN when Cognito sign-in is offered (AWS_ACCOUNT_ID, or any account off AWS)."""
    if "cognito" not in settings.auth_providers():
        return []
    account = settings.values.get("AWS_ACCOUNT_ID") or "*"
    pool = settings["COGNITO_USER_POOL_ID"]
    return [f"arn:aws:cognito-idp:{wiring.cognito_region(settings)}:{account}:userpool/{pool}"]


def _pool_of(cloud: Cloud) -> list[str]:
    return pool_arn(cloud.settings)


# DescribeUserPool and DescribeUserPoolClient are authorised on the pool's ARN
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncognitouserpools.html).
NEEDS = need(
    "aws",
    ("cognito-idp:DescribeUserPool", "cognito-idp:DescribeUserPoolClient"),
    _pool_of,
    "read the Cognito user pool and app client the frontend signs in with (preflight, validate --online)",
    ("DescribeUserPool", "DescribeUserPoolClient"),
)


def read(settings: Settings) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
    """The pool and the app client as Cognito describes them, or a line saying which one is missing."""
    import boto3

    region, pool_id = wiring.cognito_region(settings), settings["COGNITO_USER_POOL_ID"]
    client_id = settings["COGNITO_CLIENT_ID"]
    idp = boto3.client("cognito-idp", region_name=region)
    try:
        pool = aws_call(lambda: idp.describe_user_pool(UserPoolId=pool_id)["UserPool"], "Cognito DescribeUserPool")
    except ToolError as exc:
        if exc.code != "ResourceNotFoundException":
            raise
        return None, None, [f"COGNITO_USER_POOL_ID: user pool {pool_id} does not exist in {region}: use the pool's id"]
    try:
        client = aws_call(
            lambda: idp.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"],
            "Cognito DescribeUserPoolClient",
        )
    except ToolError as exc:
        if exc.code != "ResourceNotFoundException":
            raise
        line = (
            f"COGNITO_CLIENT_ID: app client {client_id} does not exist in user pool {pool_id} (deleted, or a client "
            "of another pool): use an app client of this pool"
        )
        return pool, None, [line]
    return pool, client, []


def problems(settings: Settings, pool: dict[str, Any], client: dict[str, Any]) -> list[str]:
    """Every mismatch between the settings and the described pool and client, one line each with the fix."""
    out = []
    region = wiring.cognito_region(settings)
    issuer = wiring.cognito_issuer(region, pool.get("Id") or settings["COGNITO_USER_POOL_ID"])
    if settings["COGNITO_ISSUER"].rstrip("/") != issuer:
        out.append(f"COGNITO_ISSUER: the user pool's issuer is {issuer}: set COGNITO_ISSUER={issuer}")
    callback = wiring.callback_url(settings, "cognito")
    if callback not in (client.get("CallbackURLs") or []):
        out.append(f"Cognito app client callback URLs lack {callback}: add it {CONSOLE}")
    frontend = wiring.frontend_url(settings)
    if not {frontend, frontend + "/"} & set(client.get("LogoutURLs") or []):
        out.append(f"Cognito app client sign-out URLs lack {frontend}: add it {CONSOLE}")
    if not client.get("AllowedOAuthFlowsUserPoolClient") or wiring.COGNITO_FLOW not in (
        client.get("AllowedOAuthFlows") or []
    ):
        out.append(f"Cognito app client does not allow the OAuth authorization code grant: enable it {CONSOLE}")
    missing = [s for s in wiring.COGNITO_SCOPES if s not in (client.get("AllowedOAuthScopes") or [])]
    if missing:
        out.append(f"Cognito app client does not allow the scope(s) {', '.join(missing)}: add them {CONSOLE}")
    if wiring.COGNITO_IDENTITY_PROVIDER not in (client.get("SupportedIdentityProviders") or []):
        out.append(f"Cognito app client does not enable the identity provider Cognito user pool: enable it {CONSOLE}")
    has_secret = bool(client.get("ClientSecret"))
    given = bool(settings["COGNITO_CLIENT_SECRET"])
    if given and not has_secret:
        out.append(
            "COGNITO_CLIENT_SECRET is set but app client has no secret (a public client): create an app client "
            "with a client secret (a secret cannot be added to an existing client) and use its id and secret"
        )
    elif has_secret and not given:
        out.append("COGNITO_CLIENT_SECRET: the app client has a secret: set it (Cognito refuses the client without)")
    elif has_secret and not hmac.compare_digest(client["ClientSecret"], settings["COGNITO_CLIENT_SECRET"]):
        out.append(f"COGNITO_CLIENT_SECRET is not the secret of client {client.get('ClientId')}: copy it from there")
    return out


def check(settings: Settings) -> list[str]:
    """Read the pool and client and name each mismatch; the client's secret value is never printed."""
    pool, client, missing = read(settings)
    if client is not None:
        from tools.report import REPORTER

        REPORTER.register_secrets([client.get("ClientSecret") or ""])
    if pool is None or client is None:
        return missing
    return problems(settings, pool, client)


def reader_policy(settings: Settings) -> dict[str, Any]:
    """The read-only policy the Cognito check needs (the declared actions on the pool), for an identity off AWS."""
    statement = {"Sid": "ReadSignInClient", "Effect": "Allow", "Action": list(NEEDS.actions)}
    return {"Version": "2012-10-17", "Statement": [{**statement, "Resource": pool_arn(settings)}]}


def reader_script(settings: Settings) -> str:
    """`make cloud-setup` off AWS with Cognito sign-in: a read-only AWS identity for the online check, or ''."""
    if "cognito" not in settings.auth_providers():
        return ""

    user = f"{settings.cluster_name}-cognito-reader"
    return f"""
# Cognito sign-in on {settings.cloud}: preflight reads the user pool and app client with an AWS identity
# that may do nothing else. Give its key to the deploy as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
# (secrets); without one the Cognito check is skipped with a warning.
cat > cognito-reader.json <<'JSON'
{json.dumps(reader_policy(settings), indent=2)}
JSON
aws iam create-user --user-name {user} || true
aws iam put-user-policy --user-name {user} --policy-name cognito-read --policy-document file://cognito-reader.json
aws iam create-access-key --user-name {user}
"""
