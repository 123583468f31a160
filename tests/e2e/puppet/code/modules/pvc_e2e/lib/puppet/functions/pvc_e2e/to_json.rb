# frozen_string_literal: true

# pvc_e2e::to_json(value): the value as pretty-printed JSON (Puppet 7 has no
# JSON function without stdlib, and these modules must stand alone).
require 'json'

Puppet::Functions.create_function(:'pvc_e2e::to_json') do
  dispatch :to_json do
    param 'Any', :value
  end

  def to_json(value)
    JSON.pretty_generate(value)
  end
end
