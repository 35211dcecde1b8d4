"""Rules files shared by the alerting tests: the README's complete example, and pieces of it."""

VEHICLE_RULES = """\
evaluator:
  grace: 2m
  late_horizon: 1h
rules:
  - name: speeding
    type: record
    description: a car over 120 km/h
    when: speed > 120
    key: carID
    value: speed
    repeat: 30m
    severity: critical
  - name: speeding-burst
    type: window
    aggregate: count
    filter: speed > 120
    window: 5m
    hop: 1m
    threshold: "> 50"
    for: 2
    keep_firing: 1
    repeat: 1h
  - name: traffic-jam
    type: window
    aggregate: avg
    field: speed
    group_by: zone
    window: 10m
    threshold: "< 5"
  - name: speed-p95
    type: window
    aggregate: p95
    field: speed
    group_by: zone
    window: 5m
    threshold: "> 130"
    severity: info
  - name: busy-hour
    type: window
    aggregate: distinct
    field: carID
    window: 1h
    threshold: "> 2000"
    send_resolved: false
  - name: car-silent
    type: absence
    key: carID
    after: 10m
    silence_until: 2026-01-01T00:00:00Z
  - name: logstore-silent
    type: absence
    after: 5m
    severity: critical
"""
