"""The AWS provider instance's configuration (``providers.<name>`` in talprov.yaml).

Credentials never appear here: boto3 finds them the AWS way (environment,
shared profile, SSO, instance or task role). The config only says which
profile to start from and, optionally, which role to assume.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from talprov.durations import Seconds
from talprov.errors import written_flag


class AwsConfig(BaseModel):
    """Connection and behaviour settings of one AWS provider instance."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    region: str = Field(
        min_length=1,
        description="AWS region the instance works in, e.g. eu-west-1.",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="EC2/S3/STS endpoint override, for moto or LocalStack "
        "(e.g. http://127.0.0.1:5000). Leave unset for AWS itself.",
    )
    profile: str | None = Field(
        default=None,
        description="Named profile from ~/.aws/config to take credentials from; "
        "unset means the default credential chain (environment, profile, instance role).",
    )
    role_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$",
        description="IAM role to assume (sts:AssumeRole) on top of the base credentials.",
    )
    external_id: str | None = Field(
        default=None,
        description="ExternalId passed to sts:AssumeRole, when the role's trust policy "
        "asks for one.",
    )
    role_session_name: str = Field(
        default="talprov",
        pattern=r"^[\w+=,.@-]{2,64}$",
        description="Session name used when assuming role_arn (shows up in CloudTrail).",
    )
    verify_tls: bool | str = Field(
        default=True,
        description="Verify the endpoint's TLS certificate: true, false, or a CA bundle path "
        "(a quoted \"false\" is the flag, as for every other flag; write ./false for a file).",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="botocore's own attempts per API call (retry mode 'standard') for "
        "throttling, 5xx answers and lost connections; a call that times out is not "
        "retried inside the call. Kept low because talprov retries whole steps with its "
        "own backoff on top.",
    )
    connect_timeout: Seconds = Field(default=10.0, gt=0, description="Seconds to connect.")
    read_timeout: Seconds = Field(default=60.0, gt=0, description="Seconds to wait for a reply.")
    running_timeout: Seconds = Field(
        default=900.0,
        gt=0,
        description="Seconds an instance may take from launch to 'running' before the "
        "request fails with a timeout.",
    )
    poll_interval: Seconds = Field(
        default=5.0,
        gt=0,
        description="Seconds between checks while waiting for an instance or an image import.",
    )
    max_batch: int = Field(
        default=1000,
        ge=1,
        le=1000,
        description="Most instances launched by one RunInstances call when several requests "
        "share a shape and a machine config (EC2 allows 1,000; a batch is also cut where "
        "its packed member list no longer fits the tags the shape leaves free).",
    )
    # Off by default on EC2 alone: Talos takes the hostname from the instance
    # metadata there (machines are never nameless, unlike NoCloud without
    # network-config), and a per-machine name would make every user-data distinct,
    # so identical machines could no longer share RunInstances calls.
    name_machines: bool = Field(
        default=False,
        description="Name each machine after its request id in its config (HostnameConfig "
        "or machine.network.hostname, unless the config names it). Off (the default): Talos "
        "keeps EC2's hostname (ip-...) and requests with one machine config share "
        "RunInstances calls.",
    )
    launch_concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="RunInstances calls issued in parallel for requests that cannot share a call.",
    )
    image_bucket: str | None = Field(
        default=None,
        description="S3 bucket for uploading custom Talos images before ImportSnapshot. "
        "Needed only for non-default schematics (extensions, kernel args, META).",
    )
    image_prefix: str = Field(
        default="talprov/images/",
        description="Key prefix inside image_bucket.",
    )
    import_role: str = Field(
        default="vmimport",
        description="Service role that VM Import uses to read image_bucket "
        "(ImportSnapshot RoleName).",
    )

    @field_validator("verify_tls", mode="before")
    @classmethod
    def _quoted_flag(cls, value: object) -> object:
        # bool | str takes "false" as the str, a bundle path; every other talprov flag
        # reads it as False (pydantic's lax bool), so this one does too.
        flag = written_flag(value)
        return value if flag is None else flag
