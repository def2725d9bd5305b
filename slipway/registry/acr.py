"""Azure ACR: an Azure AD token from azure-identity's DefaultAzureCredential (az login, workload identity,
managed identity, AZURE_CLIENT_* variables) exchanged at `https://<registry>/oauth2/exchange` for an ACR
refresh token, which the registry accepts as the password of the all-zero user."""
from __future__ import annotations

from slipway.errors import SlipwayError
from slipway.registry.client import RegistryClient, _error_text

ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
# The Azure Resource Manager audience, as `az acr login` requests it.
AAD_SCOPE = "https://management.azure.com/.default"


class AcrRegistryClient(RegistryClient):
    kind = "acr"

    def __init__(self, env, env_name=None, azure_credential=None):
        super().__init__(env, env_name)
        self._azure_credential = azure_credential

    def _aad_token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        credential = self._azure_credential
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        try:
            return credential.get_token(AAD_SCOPE).token
        except ClientAuthenticationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SlipwayError(f"no Azure credentials for registry {self.host} ({first})",
                               "run `az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET "
                               "(or use workload or managed identity)") from exc

    def _fetch_credentials(self) -> tuple[str, str]:
        url = f"{self.scheme}://{self.host}/oauth2/exchange"
        form = {"grant_type": "access_token", "service": self.host, "access_token": self._aad_token()}
        resp = self._send("POST", url, {"Content-Type": "application/x-www-form-urlencoded"}, data=form)
        if resp.status_code >= 400:
            raise SlipwayError(f"ACR {self.host} refused the Azure AD token exchange (HTTP {resp.status_code}: "
                               f"{_error_text(resp)})", self.credentials_fix())
        refresh = resp.json().get("refresh_token")
        if not refresh:
            raise SlipwayError(f"ACR {self.host} returned no refresh token from /oauth2/exchange",
                               self.credentials_fix())
        return ACR_USERNAME, refresh

    def credentials_source(self) -> str:
        return "the ACR token of the current Azure identity"

    def credentials_fix(self) -> str:
        return "give the Azure identity the AcrPush role on this registry (and check `az account show`)"
