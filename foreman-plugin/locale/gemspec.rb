# frozen_string_literal: true

# Matches foreman_pvc.gemspec
_('Turns a Puppet flag parameter on for a canary, then growing waves of hosts, ' \
  'asks pvc-bridge to run them soon, and pauses by itself when runs fail.')
