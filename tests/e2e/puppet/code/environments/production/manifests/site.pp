# The ENC gives each node its classes and parameters; every node also gets
# the end-to-end class.
node default {
  include pvc_e2e
}
