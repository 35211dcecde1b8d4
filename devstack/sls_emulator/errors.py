"""SLS error codes with the HTTP status real SLS sends for each."""

from __future__ import annotations

# HTTP status per error code, from the SLS error-code pages and the cpp SDK status table.
STATUS_BY_CODE: dict[str, int] = {
    "InvalidCursor": 400,
    "ParameterInvalid": 400,
    "MissingParameter": 400,
    "PostBodyInvalid": 400,
    "PostBodyUncompressError": 400,
    "RequestTimeExpired": 400,
    "InvalidRequestTime": 400,
    "ProjectAlreadyExist": 400,
    "LogStoreAlreadyExist": 400,
    "ConsumerGroupAlreadyExist": 400,
    "InvalidShardCheckPoint": 400,
    "ConsumerNotMatch": 400,
    "LogStoreWithoutShard": 400,
    "Unauthorized": 401,
    "InvalidAccessKeyId": 401,
    "SignatureNotMatch": 401,
    "ReadQuotaExceed": 403,
    "ShardReadQuotaExceed": 403,
    "WriteQuotaExceed": 403,
    "ShardWriteQuotaExceed": 403,
    "ProjectForbidden": 403,
    "ProjectNotExist": 404,
    "LogStoreNotExist": 404,
    "ShardNotExist": 404,
    "ConsumerGroupNotExist": 404,
    "NotFound": 404,
    "InternalServerError": 500,
    "ServerBusy": 500,
}


class SlsError(Exception):
    """An error answered to the client as SLS does: JSON ``{"errorCode", "errorMessage"}`` plus a status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_BY_CODE.get(code, 400)

    def body(self) -> dict[str, str]:
        """The JSON error document."""
        return {"errorCode": self.code, "errorMessage": self.message}


def project_not_exist(project: str) -> SlsError:
    """The error for an unknown project."""
    return SlsError("ProjectNotExist", f"The Project does not exist : {project}")


def logstore_not_exist(logstore: str) -> SlsError:
    """The error for an unknown logstore."""
    return SlsError("LogStoreNotExist", f"logstore {logstore} does not exist")


def shard_not_exist(shard_id: int | str) -> SlsError:
    """The error for an unknown shard."""
    return SlsError("ShardNotExist", f"Shard {shard_id} does not exist")


def invalid_cursor(cursor: str, why: str) -> SlsError:
    """The error for a malformed or out-of-range cursor."""
    return SlsError("InvalidCursor", f"cursor {cursor!r} is invalid: {why}")


def parameter_invalid(message: str) -> SlsError:
    """The error for a bad query or body parameter."""
    return SlsError("ParameterInvalid", message)
