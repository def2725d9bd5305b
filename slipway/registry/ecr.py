"""AWS ECR: a registry password from `ecr:GetAuthorizationToken` on every run (tokens expire after 12 h),
and the repository created on first push with immutable tags and scan on push.

boto3 finds AWS credentials its usual way (env, profile, SSO, instance/IRSA role) and honours
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_ECR, which is how the tests point it at a moto server.
"""
from __future__ import annotations

import base64
import re

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
)

from slipway.errors import SlipwayError
from slipway.registry.client import RegistryClient

_ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com")


class EcrRegistryClient(RegistryClient):
    kind = "ecr"

    def __init__(self, env, env_name=None):
        super().__init__(env, env_name)
        match = _ECR_HOST.match(self.host)
        self.region = env.registry.region or (match.group("region") if match else None)
        self.account_id = env.registry.account_id or (match.group("account") if match else None)
        self._ecr = None
        self._repository_info: dict | None = None

    def _client(self):
        if self._ecr is None:
            try:
                self._ecr = boto3.client("ecr", region_name=self.region)
            except NoRegionError as exc:
                raise SlipwayError(f"no AWS region for registry {self.host}",
                                   f"set {self._field('region')}") from exc
        return self._ecr

    def _call(self, operation: str, **kwargs):
        try:
            return getattr(self._client(), operation)(**kwargs)
        except NoCredentialsError as exc:
            raise SlipwayError("no AWS credentials found for ECR",
                               "configure them (AWS_PROFILE, `aws sso login`, AWS_ACCESS_KEY_ID/"
                               "AWS_SECRET_ACCESS_KEY, or an instance/IRSA role)") from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in ("RepositoryNotFoundException", "RepositoryAlreadyExistsException"):
                raise  # the callers' answers: "not there" / "created meanwhile by a concurrent job"
            raise SlipwayError(f"ECR {operation} failed for {self.host}: {error.get('Code')}: "
                               f"{error.get('Message', '')}", self.credentials_fix()) from exc
        except BotoCoreError as exc:
            raise SlipwayError(f"ECR {operation} failed for {self.host}: {exc}",
                               "check the AWS region, endpoint and network") from exc

    def _fetch_credentials(self) -> tuple[str, str]:
        kwargs = {"registryIds": [self.account_id]} if self.account_id else {}
        data = self._call("get_authorization_token", **kwargs)["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return username, password

    def _describe(self) -> dict | None:
        kwargs = {"repositoryNames": [self.repository]}
        if self.account_id:
            kwargs["registryId"] = self.account_id
        try:
            return self._call("describe_repositories", **kwargs)["repositories"][0]
        except ClientError:  # RepositoryNotFoundException: the only ClientError describe lets through
            return None

    def ensure_repository(self) -> dict:
        info = self._describe()
        created = info is None
        if created:
            kwargs = {"repositoryName": self.repository, "imageTagMutability": "IMMUTABLE",
                      "imageScanningConfiguration": {"scanOnPush": True}}
            if self.account_id:
                kwargs["registryId"] = self.account_id
            try:
                info = self._call("create_repository", **kwargs)["repository"]
            except ClientError:  # RepositoryAlreadyExistsException: another job (a push, a promote) won the race
                info, created = self._describe() or {}, False
        self._repository_info = info
        return {"repository": self.repository, "created": created,
                "tag_mutability": info.get("imageTagMutability"),
                "scan_on_push": info.get("imageScanningConfiguration", {}).get("scanOnPush")}

    def tags_immutable(self) -> bool:
        info = self._repository_info or self._describe() or {}
        return info.get("imageTagMutability", "").startswith("IMMUTABLE")

    def credentials_source(self) -> str:
        return "the ECR authorization token of the current AWS credentials"

    def credentials_fix(self) -> str:
        return ("the AWS identity needs ecr:GetAuthorizationToken, ecr:DescribeRepositories, "
                "ecr:CreateRepository and the ecr push actions on this repository")
