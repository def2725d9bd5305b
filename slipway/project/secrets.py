"""No secrets in deployments.yaml or slipway.yaml: refused before anything is built, pushed or registered.

Both files travel in every release image (its release layer) and their parameters and job variables are
registered in Prefect as plain text, readable by anyone who can read a deployment. So a value that looks like
a secret is refused, with one line naming the field (never the value) and where the secret belongs instead:
- a URL with a password in it (`postgresql://user:pw@host/db`);
- a value whose key names a secret (`password`, `db_pass`, `api_key`, `client_secret`, `token`, ...), unless
  the key says it holds a reference rather than the secret (`password_env`, `token_url`, `secret_name`, ...);
- a value shaped like a well-known credential (AWS access key id, GitHub, Slack, Prefect or Stripe key, a
  JSON Web Token, a PEM private key, an Azure storage account key), whatever its key.
A value that only refers to a secret — a Prefect template (`{{ prefect.blocks.secret.db }}`) or an environment
variable (`${DB_PASSWORD}`) — is not one.

A value that looks like a secret but is not one is marked with `not_secret:`, a list of paths next to it:
`parameters.<name>` or `job_variables.<name>[.<key>]` (a path covers what is under it), under the deployment in
deployments.yaml, under a deployment's override in slipway.yaml, or under the environment in slipway.yaml
(for its `job_variables`).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from slipway.errors import SlipwayError

# Words of a key that name a secret; pairs of words that do; the last word of a key that says it holds
# something about a secret rather than the secret itself.
SECRET_WORDS = {"password", "passwd", "passphrase", "pwd", "secret", "secrets", "token", "credential",
                "credentials", "authorization", "apikey", "privatekey", "accesskey", "secretkey"}
SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("signing", "key"),
                ("session", "key"), ("account", "key"), ("master", "key"), ("encryption", "key")}
LAST_WORD_SECRETS = {"pass"}  # db_pass, SMTP_PASS: a password only as the last word (not pass_through)
REFERENCE_WORDS = {"name", "names", "env", "var", "variable", "block", "ref", "reference", "path", "file", "id",
                   "url", "uri", "endpoint", "host", "type", "ttl", "timeout", "expiry", "expires", "length",
                   "size", "count", "header", "field", "format", "mode", "scope", "scopes", "enabled", "policy"}

_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:([^/\s@]+)@")
TOKEN_SHAPES = [
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("a Prefect API key", re.compile(r"\bpnu_[A-Za-z0-9]{36}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Slack webhook URL", re.compile(r"hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+")),
    ("a Stripe secret key", re.compile(r"\b[sr]k_live_[0-9A-Za-z]{16,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("an Azure storage account key", re.compile(r"AccountKey=[A-Za-z0-9+/=]{20,}")),
]
_PATH = re.compile(r"^(parameters|job_variables)(\.[^.\[\]]+|\[\d+\])*$")
NOT_SECRET_FORM = "'parameters.<name>' or 'job_variables.<name>[.<key>]'"


def key_words(key: str) -> list[str]:
    """`dbPassword` -> [db, password]; `API_KEY` -> [api, key]; `x-auth-token` -> [x, auth, token]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def names_a_secret(key: str) -> bool:
    words = key_words(key)
    if not words or words[-1] in REFERENCE_WORDS:
        return False
    if words[-1] in LAST_WORD_SECRETS or any(w in SECRET_WORDS for w in words):
        return True
    return any(pair in SECRET_PAIRS for pair in zip(words, words[1:]))


def is_reference(value: str) -> bool:
    """A Prefect template or an environment variable: it names a secret, it is not one."""
    stripped = value.strip()
    return ("{{" in stripped and "}}" in stripped) or stripped.startswith("$")


def why_secret(key: str | None, value: Any) -> str | None:
    """Why `value` (under `key`) looks like a secret, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    url = _URL_PASSWORD.search(value)
    if url and not is_reference(url.group(1)):
        return "a URL with a password in it"
    for what, shape in TOKEN_SHAPES:
        if shape.search(value):
            return f"it is shaped like {what}"
    if key is not None and names_a_secret(key) and not is_reference(value):
        return f"its key '{key}' names a secret and its value is written out"
    return None


def walk(value: Any, path: str = "", key: str | None = None) -> Iterator[tuple[str, str]]:
    """(path under `value`, reason) of every secret-looking value. A `{name: X, value: Y}` mapping (a
    Kubernetes env entry) is read as the key X holding Y."""
    if isinstance(value, dict):
        pair = isinstance(value.get("name"), str) and "value" in value
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}", value["name"] if pair and k == "value" else str(k))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk(item, f"{path}[{i}]", key)
    else:
        reason = why_secret(key, value)
        if reason:
            yield path, reason


def covered(path: str, not_secret: list[str]) -> bool:
    return any(path == p or path.startswith((p + ".", p + "[")) for p in not_secret)


def check_not_secret_paths(paths: list[str]) -> list[str]:
    """For the models' validators: each entry is a path of the form NOT_SECRET_FORM."""
    for path in paths:
        if not _PATH.match(path):
            raise ValueError(f"'{path}' is not a path like {NOT_SECRET_FORM}")
    return paths


def refuse_secrets(places: list[tuple[str, str, Any]], not_secret: list[str], marked_in: str) -> None:
    """Raise for the first secret-looking value whose path `not_secret` does not cover. `places`: (where the
    values are, for the message: "deployments.yaml: deployments[0].parameters"; the path not_secret names them
    by: "parameters" or "job_variables"; the values). `marked_in`: where that not_secret list goes."""
    for where, logical, values in places:
        for path, reason in walk(values):
            if covered(logical + path, not_secret):
                continue
            kind = "parameter" if logical == "parameters" else "job variable"
            raise SlipwayError(
                f"{where}{path}: this {kind} looks like a secret ({reason}); it would be stored in every release "
                "image and shown in Prefect as plain text", _fix(kind, logical + path, marked_in))


def _fix(kind: str, path: str, marked_in: str) -> str:
    if kind == "parameter":
        instead = ("pass the name of a Prefect Secret block instead and read it in the flow "
                   "(`Secret.load(name).get()`)")
    else:
        instead = ("give the job the secret from where it is kept: a Kubernetes Secret (env_from), the worker's "
                   "environment, or a Prefect Secret block ('{{ prefect.blocks.secret.<name> }}')")
    return f"{instead}; if it is not a secret, add '{path}' to not_secret: under {marked_in}"
