# The node's directory (fact pvc_e2e_root, set by its `puppet` wrapper): the
# only place the end-to-end code writes. Without it the run fails rather
# than write anywhere else.
function pvc_e2e::root() >> String {
  $root = $facts['pvc_e2e_root']
  unless $root =~ String and $root =~ /^\/./ {
    fail('pvc_e2e: the fact pvc_e2e_root (an absolute directory) is missing; run Puppet through the node\'s bin/puppet')
  }
  $root
}
