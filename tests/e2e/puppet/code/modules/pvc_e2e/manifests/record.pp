# Records a class's parameters (the ones given, not undef) as JSON in
# <root>/classes/<class name with :: as __>.json: the test compares these
# files with the ENC's classes and parameters.
define pvc_e2e::record (
  Hash $params,
) {
  $root = pvc_e2e::root()
  $given = $params.filter |$name, $value| { $value =~ NotUndef }
  $file = regsubst($title, '::', '__', 'G')
  file { "${root}/classes/${file}.json":
    ensure  => file,
    content => "${pvc_e2e::to_json($given)}\n",
  }
}
