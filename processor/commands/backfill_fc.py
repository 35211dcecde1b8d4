"""`sls-kafka backfill --via-fc`'s options: the deployed function, and FC's endpoint as for the cloud."""

from __future__ import annotations

from typing import Any

from checkpoints.base import CheckpointReader
from common.errors import ConfigError
from processor.backfill.fc_invoker import FcTarget
from processor.commands.common import EnvDefault, LogstoreAccess, int_in_range
from processor.config import Settings
from processor.credentials import Credentials
from processor.runtime import Runtime


def add_fc_options(parser: Any) -> None:
    parser.add_argument("--via-fc", metavar="FUNCTION",
                        help="send the events to this deployed FC function (async InvokeFunction) instead of running "
                        "them here; completion is followed through the job's checkpoints, which the function must "
                        "share with this command (CHECKPOINT_STORE sls or kafka)")
    parser.add_argument("--fc-endpoint", action=EnvDefault, env="FC_ENDPOINT", metavar="HOST[:PORT]",
                        help="FC 3.0 endpoint, e.g. <account id>.cn-hangzhou.fc.aliyuncs.com or the local cloud's "
                        "127.0.0.1:9000")
    parser.add_argument("--fc-region", action=EnvDefault, env="FC_REGION", default="cn-hangzhou",
                        help="FC region (default cn-hangzhou)")
    parser.add_argument("--fc-concurrency", type=int_in_range(1, 256), default=4, metavar="N",
                        help="events in flight on FC at most (one per shard; default 4)")
    parser.add_argument("--fc-stall-seconds", type=float, default=300.0, metavar="S",
                        help="an event whose checkpoint does not move for this long is sent again (default 300)")


def target_from_args(args: Any, credentials: Credentials) -> FcTarget:
    if args.dry_run:
        msg = "--via-fc runs the deployed function, which always produces: it cannot be combined with --dry-run"
        raise ConfigError(msg)
    if not args.fc_endpoint:
        msg = "--via-fc needs --fc-endpoint (or FC_ENDPOINT): the FC 3.0 endpoint, e.g. 127.0.0.1:9000 locally"
        raise ConfigError(msg)
    return FcTarget(args.via_fc, args.fc_endpoint, args.fc_region, credentials, args.fc_concurrency,
                    args.fc_stall_seconds)


def checkpoint_reader(settings: Settings, access: LogstoreAccess) -> CheckpointReader:
    """The job's checkpoints as the function writes them: this command must share its checkpoint settings."""
    runtime = Runtime(settings)
    return runtime.checkpoint_reader(runtime.sls_client(access.endpoint, access.credentials))
