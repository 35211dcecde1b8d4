"""`sls-kafka alerts`: check a rules file, backtest it over an SLS range, run the evaluator, show the history."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from alerting.rules import RuleSet, load_rules
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


def run_check(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
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
        else:
            what = f"nothing{' per ' + r.key if r.key else ''} for {r.after_seconds} s"
        lines.append(f"  {r.name} [{r.kind}, {r.severity}]: {what}")
    return "\n".join(lines) + "\n"
