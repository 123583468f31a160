#!/bin/sh
# Stand-in `puppet` for `make demo` (no puppetserver here): what pvc-agent
# runs when the bridge grants a run. It "applies" for a few seconds, restores
# the node's watched file as Puppet would, and writes the summary and report
# files pvc-agent reads afterwards. Its directory is the node's.
D="$(dirname "$0")"
[ "$1" = ssl ] && exit 0
echo "$(date +%T) $(basename "$D"): puppet $*" >&2
sleep 3
watched="$D/watched/motd"
t="$(date -u +%Y-%m-%dT%H:%M:%S.%N+00:00)"
statuses="resource_statuses: {}"
if [ "$(cat "$watched" 2>/dev/null)" != "managed by Puppet" ]; then
  echo "managed by Puppet" > "$watched"
  statuses="resource_statuses:
  File[$watched]:
    title: $watched
    resource_type: File
    changed: true
    time: '$t'
    evaluation_time: 0.001
    events:
    - status: success
      time: '$t'"
fi
cat > "$D/state/last_run_report.yaml" <<YAML
--- !ruby/object:Puppet::Transaction::Report
host: $(basename "$D")
status: changed
$statuses
cached_catalog_status: not_used
YAML
cat > "$D/state/last_run_summary.yaml" <<YAML
---
version:
  config: 1
  puppet: 7.23.0
resources:
  changed: 1
  failed: 0
  total: 7
time:
  total: 3.0
  last_run: $(date +%s)
changes:
  total: 1
events:
  failure: 0
  success: 1
  total: 1
YAML
echo "Notice: Applied catalog in 3.00 seconds"
exit 2
