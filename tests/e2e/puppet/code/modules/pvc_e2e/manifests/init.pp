# The end-to-end node: two files managed the two ways Puppet manages file
# content (`content =>` compiled into the catalog, `source =>` fetched from
# the server), and a branch guarded by the rollout flag `update_flag`
# (pvc-agent passes Foreman rollout flags as FACTER_UPDATE_FLAG=true).
# Everything lives under the node's own directory, the fact pvc_e2e_root.
class pvc_e2e {
  $root = pvc_e2e::root()
  # The flag arrives as a fact (FACTER_UPDATE_FLAG) or as an ENC parameter.
  $flag_on = "${getvar('update_flag')}" == 'true'

  file { "${root}/managed":
    ensure => directory,
  }
  # The records of the classes this catalog no longer has are removed, so
  # the directory lists exactly the ENC's classes.
  file { "${root}/classes":
    ensure  => directory,
    recurse => true,
    purge   => true,
    force   => true,
  }

  file { "${root}/managed/content.conf":
    ensure  => file,
    content => epp('pvc_e2e/content.conf.epp', {
      'certname'    => $trusted['certname'],
      'env'         => $environment,
      'fqdn'        => getvar('foreman_fqdn'),
      'hostgroup'   => getvar('hostgroup'),
      'update_flag' => $flag_on,
    }),
  }
  file { "${root}/managed/source.conf":
    ensure => file,
    source => 'puppet:///modules/pvc_e2e/source.conf',
  }

  if $flag_on {
    file { "${root}/update_flag.txt":
      ensure  => file,
      content => "on\n",
    }
  } else {
    file { "${root}/update_flag.txt":
      ensure => absent,
    }
  }
}
