"""`sls-kafka alerts`: check a rules file, backtest it over an SLS range, run the evaluator, show the history."""

from __future__ import annotations

import argparse
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from alerting.rules import TRIGGER_LOG_DEFAULTS, RuleSet, load_rules
from processor.commands.common import (
    EnvDefault,
    access_from_args,
    add_logstore_options,
    graceful_stop,
    range_from_args,
    settings_without_kafka,
)
from processor.config import parse_fields


def register(sub: Any) -> None:
    p = sub.add_parser("alerts", help="KPI alerts: check rules, backtest, run the evaluator, show history",
                       description="Alert rules over the projected driving logs (see README, Alerts).")
    cmds = p.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND", required=True)
    check = cmds.add_parser("check", help="validate a rules file",
                            description="Validate a rules file: each error names the rule, the key and the line.")
    check.add_argument("rules", help="the rules file (YAML)")
    check.add_argument("--fields", default=None, metavar="SPEC",
                       help="PROJECTION_FIELDS of the function, to check that every field a rule reads is projected")
    check.set_defaults(func=run_check)

    test = cmds.add_parser("test", help="backtest: what the rules would have sent over an SLS range",
                           description="Read an SLS range through the function's loop with the alert observer, "
                           "replay the evaluator over it and print each notification with the time it would have been "
                           "sent. Nothing is produced or sent. --from/--to select log groups by SLS receive time; "
                           "windows are in event time (__time__). PROJECTION_FIELDS etc. come from the environment.")
    test.add_argument("rules", help="the rules file (YAML)")
    add_logstore_options(test)
    test.add_argument("--from", dest="start", required=True, help="begin, unix seconds, ISO time or a cursor")
    test.add_argument("--to", dest="stop", default="end", help="end (default), unix seconds, ISO time or a cursor")
    test.set_defaults(func=run_test)

    run = cmds.add_parser("run", help="run the evaluator locally, every --interval seconds",
                          description="Merge the partials, decide, send through ALERT_CHANNEL. Kafka settings and "
                          "ALERT_PARTIALS_TOPIC, ALERT_STATE_TOPIC, ALERT_HISTORY_TOPIC come from the environment.")
    run.add_argument("--rules", action=EnvDefault, env="ALERT_RULES", required=True, help="the rules file")
    run.add_argument("--channel", action=EnvDefault, env="ALERT_CHANNEL",
                     help="one more channel, named default, besides the rules file's channels: section: file:PATH "
                     "(JSON lines) or module:factory (a factory(env) returning a Channel)")
    run.add_argument("--interval", type=float, default=30.0, help="seconds between evaluations (default 30)")
    run.add_argument("--once", action="store_true", help="evaluate once and exit (what the timer function does)")
    run.set_defaults(func=run_evaluator)

    history = cmds.add_parser("history", help="show the alerts history (transitions and send attempts)",
                              description="Print the history topic (ALERT_HISTORY_TOPIC), oldest first.")
    history.add_argument("--rule", default=None, help="only this rule")
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    history.set_defaults(func=run_history)

    pending = cmds.add_parser("pending", help="show the notifications not sent yet (the outbox)",
                              description="Print each outbox entry of ALERT_STATE_TOPIC that is not sent: its "
                              "channel, status, attempts, next attempt and the last reply.")
    pending.set_defaults(func=run_pending)


def run_check(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
    if rules.channels:
        from alerting.channels import channels_from_config

        # Secrets and templates are checked too: a channel that cannot be built fails the evaluator's start.
        channels_from_config(rules.channels, base_dir=Path(args.rules).parent)
    if args.fields:
        rules.check_fields({f.output for f in parse_fields(args.fields, "--fields")}, "--fields")
    sys.stdout.write(describe(rules))
    return 0


def describe(rules: RuleSet) -> str:
    lines = [f"{rules.source}: {len(rules.rules)} rule(s), grace {rules.grace_seconds} s, "
             f"late horizon {rules.late_horizon_seconds} s"]
    for r in rules.rules:
        if r.kind == "record":
            what = f"when {r.condition.text if r.condition else ''} per {r.key}, repeat {r.repeat_seconds} s"
        elif r.kind == "window":
            agg = f"p{r.percentile:g}" if r.aggregate == "percentile" else r.aggregate
            of = f"({r.value_field})" if r.value_field else ""
            by = f" by {r.key}" if r.key else ""
            hop = f" every {r.hop_seconds} s" if r.hop_seconds != r.window_seconds else ""
            where = f" where {r.condition.text}" if r.condition else ""
            what = f"{agg}{of}{where}{by} over {r.window_seconds} s{hop} {r.comparison} {r.threshold:g}"
        elif r.kind == "lag":
            what = f"lag per shard {r.comparison} {r.threshold:g} s, every {r.hop_seconds} s"
        elif r.trigger_log is not None:
            where = "/".join(given or f"${name}" for given, name in zip(r.trigger_log, TRIGGER_LOG_DEFAULTS,
                                                                          strict=True))
            what = (f"failed invocations per function and shard in {where} over {r.window_seconds} s "
                    f"{r.comparison} {r.threshold:g}")
        else:
            what = f"nothing{' per ' + r.key if r.key else ''} for {r.after_seconds} s"
        lines.append(f"  {r.name} [{r.kind}, {r.severity}]: {what}")
    return "\n".join(lines) + "\n"


def run_test(args: argparse.Namespace) -> int:
    from alerting.backtest import read_range, replay
    from processor.runtime import Runtime

    rules = load_rules(args.rules)
    start, stop = range_from_args(args)
    access = access_from_args(args)
    runtime = Runtime(settings_without_kafka())
    try:
        partials = read_range(runtime, access.logstore_api(), access.endpoint, start, stop, rules, access.credentials)
    finally:
        runtime.close(0)
    sent = replay(rules, partials)
    records = sum(p.records() for p in partials)
    print(f"read {len(partials)} page(s) of {access.project}/{access.logstore}; {len(sent)} notification(s) "
          f"would have been sent ({records} rule matches)")
    for at, n in sent:
        groups = ", ".join(f"{g.group}={g.value:g}" for g in n.groups[:10])
        more = f" (+{len(n.groups) - 10})" if len(n.groups) > 10 else ""
        value = "" if n.value is None else f" value {n.value:g}"
        threshold = "" if n.threshold is None else f" {n.comparison} {n.threshold:g}"
        print(f"{_iso(at)} {n.rule} {n.transition.value} [{n.severity}]{value}{threshold} window "
              f"{_iso(n.window_start)}..{_iso(n.window_end)}{' ' + groups + more if groups else ''}")
    return 0


def run_evaluator(args: argparse.Namespace) -> int:
    from alerting.channel_config import evaluator_channels
    from alerting.evaluator import Evaluator, EvaluatorConfig
    from alerting.failures import trigger_log
    from alerting.lag import lag_source

    rules = load_rules(args.rules)
    lag, failures = lag_source(rules), trigger_log(rules)
    evaluator = Evaluator(rules, EvaluatorConfig.from_env(), evaluator_channels(rules, args.channel),
                          measure_lag=lag.measure if lag else None,
                          read_failures=failures.failures if failures else None)
    stop = threading.Event()
    try:
        with graceful_stop(stop, "the evaluation"):
            while True:
                report = evaluator.tick()
                print(f"{_iso(evaluator.clock())} partials {report.partials}, new notifications "
                      f"{report.notifications}, sent {report.sent}, failed {report.failed}", flush=True)
                if args.once or stop.wait(args.interval):
                    return 0
    finally:
        evaluator.close()


def run_history(args: argparse.Namespace) -> int:
    from alerting.evaluator import EvaluatorConfig
    from alerting.store import read_topic

    config = EvaluatorConfig.from_env()
    for _key, value in read_topic(config.client_config, config.history_topic):
        if value is None:
            continue
        event = orjson.loads(value)
        if args.rule and event.get("rule") != args.rule:
            continue
        if args.json:
            print(value.decode())
            continue
        what = event.get("transition", "")
        if event["event"] == "attempt":
            detail = f"{event['channel']} attempt {event['attempt']}: {'delivered' if event['delivered'] else 'failed'}"
            detail += f" ({event['reply']})"
        elif event["event"] == "too_late":
            detail = f"{event['records']} rule match(es) in {event['partial']} older than the late horizon"
        elif event["event"] == "late":
            detail = f"{event['records']} late record(s) in window {_iso(event['window_start'])}"
        else:
            detail = f"value {event.get('value')} window {_iso(event['window_start'])}..{_iso(event['window_end'])}"
            detail += " (silenced)" if event.get("silenced") else ""
        print(f"{_iso(event['at'])} {event['rule']} {event['event']} {what} {event.get('id', '')[:12]} {detail}")
    return 0


def run_pending(args: argparse.Namespace) -> int:
    from alerting.evaluator import OUTBOX_KEY, EvaluatorConfig
    from alerting.outbox import SENT
    from alerting.store import read_topic

    config = EvaluatorConfig.from_env()
    latest: dict[str, bytes | None] = dict(read_topic(config.client_config, config.state_topic))
    waiting = 0
    for key, value in sorted(latest.items()):
        if not key.startswith(OUTBOX_KEY) or value is None:
            continue
        entry = orjson.loads(value)
        if entry["status"] == SENT:
            continue
        waiting += 1
        n = entry["notification"]
        print(f"{n['rule']} {n['transition']} {n['id'][:12]} to {entry['channel']}: {entry['status']}, "
              f"{entry['attempts']} attempt(s), next {_iso(entry['next_at'])}; last reply: {entry['reply'] or '-'}")
    print(f"{waiting} notification(s) waiting")
    return 0


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
