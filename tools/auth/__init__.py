"""Sign-in wiring: what the frontend (NextAuth) and the provider (Google, Cognito) must agree on.

`wiring` holds the facts (callback paths, issuers, scopes) in one place; `cognito` reads the user
pool and its app client before the deploy; `google` prints what must be registered by hand (Google
has no API to read a client's redirect URIs); `preflight` runs them for helm_deploy and
`validate --online`; `live` tries the live release's sign-in for smoke_test.
"""
