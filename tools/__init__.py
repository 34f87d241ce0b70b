"""cmbcluster-deploy: the steps that put CMBCluster on a cloud account, one CLI each.

Imports sit at module top, except those `--help` must not pay for, imported inside the function
that needs them with a comment saying so: the third-party packages (boto3, botocore, google-*,
requests, urllib3, certifi, PyYAML, python-dotenv, pyhelm3, semver), asyncio, and the stdlib
modules that pull in ssl or tempfile (urllib.request, ssl, tempfile) where a step's --help would
load them (`make bench-help`).
"""
