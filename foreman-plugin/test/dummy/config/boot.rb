# frozen_string_literal: true

# No bundler: the tests run on the distribution's gems (test.sh).
$LOAD_PATH.unshift File.expand_path('../../../lib', __dir__)
